"""The release tool: `bluegreen status|deploy|promote|rollback|retire|recover|repair|diff`.

cli.py parses and reports; each command is a module in commands/ over one Session (session.py);
steps.py decides (pure), stacks.py runs Pulumi, kube.py, checks.py and drift.py read the cluster,
helm.py and manifests.py read Helm's records and diff what an update would change.
"""
