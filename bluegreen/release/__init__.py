"""The release tool: guarded release steps over the project's stacks (cli.py is the entry point).

plan.py decides (pure), stacks.py runs Pulumi, kube.py and checks.py read the cluster.
"""
