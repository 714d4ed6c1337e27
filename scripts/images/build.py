#!/usr/bin/env python3
"""Build the demo and pause container images as image archives, with no Docker and no registry.

There is no image registry (and no Docker) on this machine: the images are built here from the Go
sources next to this file and imported into the local containerd with

    ctr -n k8s.io images import --all-platforms ARCHIVE

Each archive is in `docker save` format (manifest.json with RepoTags, one config JSON, one
uncompressed layer tar): containerd's importer takes the image name from RepoTags as is, so the full
name (bluegreen.local/demo:2.0.0) survives without --base-name. The layer holds only the static
binary (/app or /pause, root-owned, 0755) and an empty /tmp; all mtimes are 0, so the same sources
and Go version give the same bytes.

Archives are cached in ${BLUEGREEN_CACHE:-$HOME/.cache/bluegreen}/images/ (or --out DIR), named
by a hash of the image's sources, build flags, this script and the Go version; a rerun with nothing
changed builds nothing.

    python3 scripts/images/build.py [--out DIR]    stdout: "<image name> <archive path>" per image
    python3 scripts/images/build.py --list         stdout: the image names
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name, tag, source dir, binary path in the image, -X flags, extra config
IMAGES = [
    ("bluegreen.local/demo", "1.0.0", "demo", "/app", {"main.version": "1.0.0"}),
    ("bluegreen.local/demo", "2.0.0", "demo", "/app", {"main.version": "2.0.0"}),
    ("bluegreen.local/demo", "3.0.0", "demo", "/app", {"main.version": "3.0.0"}),
    ("bluegreen.local/demo", "never-ready", "demo", "/app",
     {"main.version": "never-ready", "main.neverReady": "true"}),
    # Answers 500 to 30% of its requests, its health path OK: Ready, and failing (promote --max-error-rate).
    ("bluegreen.local/demo", "2.0.0-flaky", "demo", "/app",
     {"main.version": "2.0.0-flaky", "main.failPercent": "30"}),
    ("bluegreen.local/pause", "3.10", "pause", "/pause", {}),
]
USER = "65532:65532"
DEMO_PORT = "8080/tcp"


class BuildError(Exception):
    pass


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def go_env():
    env = dict(os.environ, CGO_ENABLED="0", GOOS="linux", GOARCH="amd64", GOFLAGS="-buildvcs=false",
               GOWORK="off", GOTOOLCHAIN="local", GOPROXY="off")
    return env


def go_version():
    if not shutil.which("go"):
        raise BuildError("go not found on PATH (Go is needed to build the image binaries)")
    try:
        out = subprocess.run(["go", "env", "GOVERSION"], env=go_env(), capture_output=True,
                             text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError as e:
        raise BuildError(f"`go env GOVERSION` failed: {e.stderr.strip()}") from e
    return out


def source_files(src):
    d = os.path.join(HERE, src)
    names = sorted(n for n in os.listdir(d) if n.endswith(".go") or n in ("go.mod", "go.sum"))
    if not names:
        raise BuildError(f"no Go sources in {d}")
    return d, names


def cache_key(name, tag, src, binpath, xflags, gover):
    h = hashlib.sha256()
    d, names = source_files(src)
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            h.update(f"{n}\0{sha256(f.read())}\0".encode())
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(sha256(f.read()).encode())
    h.update(json.dumps([name, tag, binpath, xflags, gover], sort_keys=True).encode())
    return h.hexdigest()[:16]


def go_build(src, xflags, out):
    d, _ = source_files(src)
    ldflags = " ".join(["-s", "-w"] + [f"-X {k}={v}" for k, v in sorted(xflags.items())])
    cmd = ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "."]
    r = subprocess.run(cmd, cwd=d, env=go_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"go build in {d} failed:\n{r.stderr.strip()}")


def tar_bytes(entries):
    """A deterministic tar: entries are (TarInfo, data or None), all root-owned with mtime 0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for ti, data in entries:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            ti.mtime = 0
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file_entry(name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), mode
    return ti, data


def dir_entry(name, mode=0o755):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, mode
    return ti, None


def image_archive(name, tag, binpath, binary):
    # Layer: the binary and an empty, world-writable /tmp (the demo runs as a non-root user).
    layer = tar_bytes([dir_entry("tmp/", 0o1777), file_entry(binpath.lstrip("/"), binary, 0o755)])
    diff_id = "sha256:" + sha256(layer)
    cfg = {"Entrypoint": [binpath], "User": USER, "WorkingDir": "/",
           "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if binpath == "/app":
        cfg["ExposedPorts"] = {DEMO_PORT: {}}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": f"scripts/images/build.py: COPY {binpath}"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = sha256(config_bytes) + ".json"
    layer_name = sha256(layer) + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [f"{name}:{tag}"], "Layers": [layer_name]}]
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    return tar_bytes([
        dir_entry(layer_name.split("/")[0] + "/"),
        file_entry(layer_name, layer),
        file_entry(config_name, config_bytes),
        file_entry("manifest.json", manifest_bytes),
    ])


def archive_prefix(name, tag):
    return name.rsplit("/", 1)[-1] + "_" + tag + "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="archive dir (default ${BLUEGREEN_CACHE:-~/.cache/bluegreen}/images)")
    ap.add_argument("--list", action="store_true", help="print the image names and exit")
    args = ap.parse_args()

    if args.list:
        for name, tag, *_ in IMAGES:
            print(f"{name}:{tag}")
        return 0

    cache = os.environ.get("BLUEGREEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "bluegreen")
    out = os.path.abspath(args.out or os.path.join(cache, "images"))
    os.makedirs(out, exist_ok=True)
    gover = go_version()

    results = []
    with tempfile.TemporaryDirectory(prefix="bluegreen-images-") as tmp:
        for name, tag, src, binpath, xflags in IMAGES:
            ref = f"{name}:{tag}"
            prefix = archive_prefix(name, tag)
            path = os.path.join(out, prefix + cache_key(name, tag, src, binpath, xflags, gover) + ".tar")
            if os.path.exists(path):
                say(f"{ref}: cached ({os.path.basename(path)})")
            else:
                t0 = time.monotonic()
                say(f"{ref}: go build ./{src} ({gover}) ...")
                binfile = os.path.join(tmp, f"{src}-{tag}")
                go_build(src, xflags, binfile)
                with open(binfile, "rb") as f:
                    data = image_archive(name, tag, binpath, f.read())
                with open(path + ".tmp", "wb") as f:
                    f.write(data)
                os.replace(path + ".tmp", path)
                # Drop this image's archives from older sources.
                for old in os.listdir(out):
                    if old.startswith(prefix) and old.endswith(".tar") and old != os.path.basename(path):
                        os.remove(os.path.join(out, old))
                say(f"{ref}: {os.path.basename(path)} ({len(data) / 1e6:.1f} MB, {time.monotonic() - t0:.1f}s)")
            results.append((ref, path))
    for ref, path in results:
        print(ref, path)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as e:
        print(f"images: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
