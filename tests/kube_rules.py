"""What the Kubernetes API server refuses, for the fields the chart fills from the stack config.

Written from Kubernetes' own validation (k8s.io/apimachinery's util/validation: DNS-1123 names,
qualified names, label values; the NetworkPolicy and label selector rules of the API server;
requests <= limits), independently of bluegreen/config.py: the generated-input tests hold the
config's verdicts and the rendered chart to these rules, so a value config.py lets through but the
API server would refuse (after `pulumi up` has started changing things) is found.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Any

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LABEL_RE = re.compile(_LABEL)
_DNS1035_RE = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_NAME_PART_RE = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_QUANTITY_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
_SUFFIX = {None: 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def dns_label(text: Any) -> bool:
    """IsDNS1123Label: namespaces, Service-like names."""
    return isinstance(text, str) and len(text) <= 63 and bool(_LABEL_RE.fullmatch(text))


def dns1035_label(text: Any) -> bool:
    """IsDNS1035Label: Service names."""
    return isinstance(text, str) and len(text) <= 63 and bool(_DNS1035_RE.fullmatch(text))


def dns_subdomain(text: Any) -> bool:
    """IsDNS1123Subdomain: most object names, Ingress hosts, Secret names."""
    return isinstance(text, str) and len(text) <= 253 and bool(_SUBDOMAIN_RE.fullmatch(text))


def label_value(text: Any) -> bool:
    """IsValidLabelValue: empty, or up to 63 characters, alphanumeric at both ends."""
    return isinstance(text, str) and (text == "" or (len(text) <= 63 and bool(_NAME_PART_RE.fullmatch(text))))


def qualified_name(text: Any) -> bool:
    """IsQualifiedName: label and annotation keys, [DNS subdomain/]name of at most 63 characters."""
    if not isinstance(text, str):
        return False
    prefix, _, name = text.rpartition("/")
    if "/" in text and not dns_subdomain(prefix):
        return False
    return 0 < len(name) <= 63 and bool(_NAME_PART_RE.fullmatch(name))


def quantity(text: Any) -> Decimal | None:
    """A resource quantity in the forms the config documents (100m, 128Mi, 0.5), else None."""
    match = _QUANTITY_RE.fullmatch(str(text)) if isinstance(text, (str, int)) and not isinstance(text, bool) else None
    return Decimal(match[1]) * _SUFFIX[match[2]] if match else None


def network(text: Any, prefix_required: bool = False) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """An IP address or CIDR with no host bits set, as Go's net.ParseCIDR / ParseIP read it (no IPv6
    zone); None otherwise."""
    if not isinstance(text, str) or "%" in text or (prefix_required and "/" not in text):
        return None
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


def ip_block_ok(block: Any) -> bool:
    """A NetworkPolicy ipBlock: a CIDR, and `except` CIDRs that are strict subsets of it."""
    if not isinstance(block, dict) or set(block) - {"cidr", "except"}:
        return False
    cidr = network(block.get("cidr"), prefix_required=True)
    excepts = block.get("except", [])
    if cidr is None or not isinstance(excepts, list):
        return False
    for text in excepts:
        inner = network(text, prefix_required=True)
        if inner is None or inner.version != cidr.version or not inner.subnet_of(cidr) or inner == cidr:
            return False
    return True


def selector_ok(selector: Any) -> bool:
    """A label selector {matchLabels, matchExpressions}: ValidateLabelSelector's rules."""
    if not isinstance(selector, dict) or set(selector) - {"matchLabels", "matchExpressions"}:
        return False
    labels, expressions = selector.get("matchLabels", {}), selector.get("matchExpressions", [])
    if not isinstance(labels, dict) or not all(qualified_name(k) and label_value(v) for k, v in labels.items()):
        return False
    if not isinstance(expressions, list):
        return False
    for item in expressions:
        if not isinstance(item, dict) or set(item) - {"key", "operator", "values"}:
            return False
        values = item.get("values", [])
        if not qualified_name(item.get("key")) or item.get("operator") not in OPERATORS or not isinstance(values, list):
            return False
        if not all(label_value(v) for v in values):
            return False
        if (item["operator"] in ("In", "NotIn")) != bool(values):  # In/NotIn need values; Exists forbids them
            return False
    return True


def peer_ok(peer: Any) -> bool:
    """A NetworkPolicy peer: an ipBlock alone, or a namespaceSelector and/or a podSelector."""
    if not isinstance(peer, dict) or not peer or set(peer) - {"ipBlock", "namespaceSelector", "podSelector"}:
        return False
    if "ipBlock" in peer:
        return len(peer) == 1 and ip_block_ok(peer["ipBlock"])
    return all(selector_ok(part) for part in peer.values())


def object_problems(obj: dict) -> list[str]:
    """What the API server would refuse in one rendered object (the parts the chart fills from
    config): names, labels, annotation keys, hosts, images, env names, requests above limits,
    NetworkPolicy peers."""
    kind, meta = obj["kind"], obj["metadata"]
    where = f"{kind}/{meta.get('name')}"
    problems = []
    name_ok = dns1035_label if kind == "Service" else dns_subdomain
    if not name_ok(meta.get("name")):
        problems.append(f"{where}: name")
    metas = [meta]
    template = (obj.get("spec") or {}).get("template")
    if template:
        metas.append(template.get("metadata", {}))
    for m in metas:
        for key, value in (m.get("labels") or {}).items():
            if not qualified_name(key) or not label_value(value):
                problems.append(f"{where}: label {key}={value!r}")
        for key in m.get("annotations") or {}:
            if not qualified_name(key):
                problems.append(f"{where}: annotation key {key!r}")
    spec = obj.get("spec") or {}
    for rule in spec.get("rules", []) if kind == "Ingress" else []:
        if not dns_subdomain(rule.get("host")):
            problems.append(f"{where}: host {rule.get('host')!r}")
    for host in spec.get("hostnames", []) if kind == "HTTPRoute" else []:
        if not dns_subdomain(host):
            problems.append(f"{where}: hostname {host!r}")
    for ref in spec.get("parentRefs", []) if kind == "HTTPRoute" else []:
        if not dns_subdomain(ref.get("name")) or not dns_label(ref.get("namespace", "default")) \
                or not dns_subdomain(ref.get("sectionName", "s")):
            problems.append(f"{where}: parentRef {ref}")
    if kind == "Ingress" and not dns_subdomain(spec.get("ingressClassName")):
        problems.append(f"{where}: ingressClassName {spec.get('ingressClassName')!r}")
    for tls in spec.get("tls", []) if kind == "Ingress" else []:
        if not dns_subdomain(tls.get("secretName")) or not all(map(dns_subdomain, tls.get("hosts", []))):
            problems.append(f"{where}: tls {tls}")
    for container in ((template or {}).get("spec") or {}).get("containers", []):
        problems += [f"{where}: env name {e.get('name')!r}" for e in container.get("env", [])
                     if not isinstance(e.get("name"), str) or not e["name"]]
        image = container.get("image", "")
        if not image or image != image.strip():
            problems.append(f"{where}: image {image!r}")
        resources = container.get("resources") or {}
        for resource, limit in (resources.get("limits") or {}).items():
            request = (resources.get("requests") or {}).get(resource)
            low, high = quantity(request), quantity(limit)
            if low is not None and high is not None and low > high:
                problems.append(f"{where}: {resource} request {request} above its limit {limit}")
    if kind == "NetworkPolicy":
        for rule in spec.get("ingress", []):
            problems += [f"{where}: peer {peer}" for peer in rule.get("from", []) if not peer_ok(peer)]
    return problems
