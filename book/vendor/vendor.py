"""Vendor the book's JavaScript (require.js, the widget manager, MathJax 3) so pages work offline.

Jupyter Book 1 pages load these from CDNs by default: offline, widgets render as nothing and math
shows raw TeX. This script fetches the npm packages pinned in vendor.json with `npm pack` (one
tarball each, no dependency tree: the widget manager's `dist/embed-amd.js` is a self-contained
bundle), checks each tarball against its pinned sha512 integrity, and copies the files listed
there into `book/vendor/html/vendor/`. `_config.yml` lists `book/vendor/html` in
`html_extra_path`, so the files land in `_build/html/vendor/` (deliberately not under a source
`_static/`: Jupyter Book 1 adds every script found there to every page, which would run the widget
manager three times). `make book` and `make test` run this when its output is missing.

    python book/vendor/vendor.py            # vendor once (does nothing if already up to date)
    python book/vendor/vendor.py --force    # fetch and copy again

To upgrade a package: change its version in vendor.json, set its integrity to the value
`npm view <name>@<version> dist.integrity` prints, and run with --force.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINS = HERE / "vendor.json"
OUT = HERE / "html" / "vendor"
STAMP = OUT / "VENDORED.json"


class VendorError(RuntimeError):
    """A package could not be fetched, or did not match its pinned integrity."""


def integrity_of(tarball: Path) -> str:
    """The npm-style `sha512-<base64>` integrity string of a file."""
    digest = hashlib.sha512(tarball.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def npm_pack(name: str, version: str, dest: Path) -> Path:
    """Download one package tarball from the npm registry with `npm pack`; return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(
            "npm is not installed. Install Node.js and npm (Debian: apt-get install nodejs npm), "
            "then run `make book` again.")
    cmd = [npm, "pack", f"{name}@{version}", "--pack-destination", str(dest), "--json",
           "--ignore-scripts", "--silent"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise VendorError(f"`{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
    filename = json.loads(result.stdout)[0]["filename"]
    # npm names scoped tarballs "scope-name-version.tgz" (without the "@")
    return dest / filename.lstrip("@").replace("/", "-")


def copy_members(tarball: Path, copy: dict[str, str], out: Path) -> list[str]:
    """Copy tarball members to `out` following the `copy` map; return the paths written.

    A key ending in "/" copies that whole folder; a key with "*" copies every matching file
    into the folder named by its value; any other key copies one file.
    """
    written = []
    with tarfile.open(tarball, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for source, target in copy.items():
            if source.endswith("/"):
                chosen = [(m, target + m.name[len(source):])
                          for m in members if m.name.startswith(source)]
            elif "*" in source:
                chosen = [(m, target + Path(m.name).name)
                          for m in members if fnmatch.fnmatch(m.name, source)]
            else:
                chosen = [(m, target) for m in members if m.name == source]
            if not chosen:
                raise VendorError(f"{tarball.name}: nothing matches {source!r}")
            for member, rel in chosen:
                dest = (out / rel).resolve()
                if out.resolve() not in dest.parents:
                    raise VendorError(f"{tarball.name}: refusing to write outside {out}: {rel}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(member).read())
                written.append(rel)
    return written


def is_up_to_date(pins: dict) -> bool:
    """True when the vendored files exist and were produced from exactly these pins."""
    if not STAMP.exists():
        return False
    return json.loads(STAMP.read_text()).get("packages") == pins["packages"]


def vendor(force: bool = False) -> None:
    """Fetch, verify and copy every pinned package into OUT, then write the stamp file."""
    pins = json.loads(PINS.read_text())
    if not force and is_up_to_date(pins):
        print(f"vendor: {OUT.relative_to(HERE.parent.parent)} is up to date")
        return
    staging = OUT.with_name("vendor.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for pkg in pins["packages"]:
                name, version = pkg["name"], pkg["version"]
                print(f"vendor: npm pack {name}@{version}", flush=True)
                tarball = npm_pack(name, version, Path(tmp))
                got = integrity_of(tarball)
                if got != pkg["integrity"]:
                    raise VendorError(f"{name}@{version}: integrity {got} does not match the "
                                      f"pinned {pkg['integrity']} in {PINS.name}")
                files = copy_members(tarball, pkg["copy"], staging)
                print(f"vendor:   {len(files)} files, licence {pkg['license']}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / STAMP.name).write_text(json.dumps(
        {"about": "Produced by book/vendor/vendor.py from these pinned npm packages "
                  "(each keeps its own licence; see the package.json beside its files).",
         "packages": pins["packages"]}, indent=2) + "\n")
    shutil.rmtree(OUT, ignore_errors=True)
    staging.rename(OUT)
    print(f"vendor: wrote {OUT.relative_to(HERE.parent.parent)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch and copy even if up to date")
    args = parser.parse_args()
    try:
        vendor(force=args.force)
    except VendorError as exc:
        print(f"vendor: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
