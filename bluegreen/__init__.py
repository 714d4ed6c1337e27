"""bluegreen: blue/green releases of a Helm chart on Kubernetes, driven by Pulumi stack config.

Flow: config.py (stack config -> Settings) -> slots.py (which slot is prod/stage) ->
values.py (the chart's values) -> component.py (BlueGreenApp -> helm.v3.Release) -> chart/.
"""
