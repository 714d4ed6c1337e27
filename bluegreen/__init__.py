"""bluegreen: blue/green releases of a Helm chart on Kubernetes, driven by Pulumi stack config.

Flow: keys.py (the key table) + config.py (stack config -> Settings) -> values.py (the chart's
values) -> component.py (BlueGreenApp -> helm.v3.Release) -> chart/; contract.py holds what the
program, the chart and the release tool share.
"""
