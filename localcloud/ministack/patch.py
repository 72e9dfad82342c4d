"""Apply the local cloud's patches (localcloud/ministack/patches/*.patch) to the pinned MiniStack.

Each patch is a unified diff against the installed package (paths relative to site-packages). A hunk is
applied by content, not by line number: its old text (context and removed lines) must occur exactly once
in the file, and is replaced by its new text. That makes applying idempotent (a hunk whose new text is
already there is skipped) and makes a changed MiniStack fail loudly instead of being half-patched.

    .venv-ministack/bin/python -m localcloud.ministack.patch            # apply (a no-op when applied)
    .venv-ministack/bin/python -m localcloud.ministack.patch --check    # exit 1 unless fully applied
    .venv-ministack/bin/python -m localcloud.ministack.patch --revert   # back to the pristine package

Run it with the interpreter whose MiniStack it should patch, or name the directory with --site-packages.
A MiniStack already running keeps the old code until it is restarted."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATCH_DIR = HERE / "patches"
REQUIREMENTS = HERE / "requirements.txt"
PACKAGE = "ministack"

APPLIED, PENDING = "applied", "pending"


class PatchError(RuntimeError):
    """The patches cannot be applied safely: wrong MiniStack version, or a hunk no longer matches."""


@dataclass(frozen=True)
class Hunk:
    patch: str  # the patch file's name, for messages
    path: str  # relative to site-packages, e.g. "ministack/services/lambda_svc.py"
    header: str  # the "@@ ... @@" line, for messages
    old: str
    new: str

    def state(self, text: str) -> str:
        """APPLIED or PENDING for this file's text; PatchError when neither is unambiguous."""
        n_old, n_new = text.count(self.old), text.count(self.new)
        if n_new == 1 and (n_old == 0 or (self.old in self.new and n_old == 1)):
            return APPLIED
        if n_old == 1 and (n_new == 0 or (self.new in self.old and n_new == 1)):
            return PENDING
        raise PatchError(
            f"{self.patch}: hunk {self.header} no longer applies to {self.path} "
            f"(its original text occurs {n_old} times, its patched text {n_new} times; each must be 0 or 1). "
            f"The installed MiniStack differs from the pinned one: reinstall it with "
            f"`pip install --force-reinstall --no-deps {PACKAGE}=={pinned_version()}`, or update the patch."
        )


HUNK_HEADER = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def parse_patch(text: str, name: str = "<patch>") -> list[Hunk]:
    """Hunks of a unified diff, each read by the line counts in its `@@` header. Text outside the
    file headers and hunks (such as a description before the first `--- a/...`) is ignored."""
    lines = text.splitlines(keepends=True)
    hunks: list[Hunk] = []
    path: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("--- ") and i < len(lines) and lines[i].startswith("+++ "):
            path = lines[i][4:].rstrip("\r\n").split("\t")[0].removeprefix("b/")
            i += 1
            continue
        match = HUNK_HEADER.match(line)
        if not match:
            continue
        header = line.rstrip("\r\n")
        if path is None:
            raise PatchError(f"{name}: hunk {header} comes before any `--- a/<path>` / `+++ b/<path>` lines")
        n_old, n_new = (int(count) if count is not None else 1 for count in match.groups())
        old: list[str] = []
        new: list[str] = []
        while len(old) < n_old or len(new) < n_new:
            if i >= len(lines):
                raise PatchError(f"{name}: hunk {header} ends early (the patch is truncated)")
            body = lines[i]
            i += 1
            if body.startswith("\\"):  # "\ No newline at end of file"
                continue
            # An editor may strip the lone space of an empty context line.
            kind, content = (" ", body) if body in ("\n", "\r\n") else (body[0], body[1:])
            if kind not in " -+":
                raise PatchError(f"{name}: unexpected line in hunk {header}: {body!r}")
            if kind in " -":
                old.append(content)
            if kind in " +":
                new.append(content)
        if len(old) != n_old or len(new) != n_new:
            raise PatchError(f"{name}: hunk {header} does not match its line counts")
        hunks.append(Hunk(name, path, header, "".join(old), "".join(new)))
    if not hunks:
        raise PatchError(f"{name}: no hunks found")
    return hunks


def load_hunks(patch_dir: Path = PATCH_DIR) -> list[Hunk]:
    files = sorted(patch_dir.glob("*.patch"))
    if not files:
        raise PatchError(f"no *.patch files in {patch_dir}")
    return [hunk for file in files for hunk in parse_patch(_read(file), file.name)]


def pinned_version(requirements: Path = REQUIREMENTS) -> str:
    match = re.search(rf"^\s*{PACKAGE}\s*==\s*([^\s;#]+)", requirements.read_text(), re.MULTILINE)
    if not match:
        raise PatchError(f"{requirements} does not pin {PACKAGE} with `{PACKAGE}==<version>`")
    return match.group(1)


def default_site_packages() -> Path:
    """The directory holding the `ministack` package of the interpreter running this module."""
    spec = importlib.util.find_spec(PACKAGE)  # locates without importing (no server starts)
    if spec is None or not spec.submodule_search_locations:
        raise PatchError(
            f"{PACKAGE} is not installed for {sys.executable}: run this module with .venv-ministack/bin/python "
            f"or pass --site-packages"
        )
    return Path(list(spec.submodule_search_locations)[0]).parent


def installed_version(site_packages: Path) -> str:
    for dist in importlib.metadata.distributions(path=[str(site_packages)]):
        if (dist.metadata["Name"] or "").lower() == PACKAGE:
            return str(dist.version)
    raise PatchError(f"no {PACKAGE} distribution (dist-info) in {site_packages}")


def check_version(site_packages: Path) -> str:
    installed, pinned = installed_version(site_packages), pinned_version()
    if installed != pinned:
        raise PatchError(
            f"{PACKAGE} {installed} is installed in {site_packages}, but the patches in {PATCH_DIR} were written "
            f"for the pinned {pinned} ({REQUIREMENTS}). Reinstall the pin, or re-check and update every patch "
            f"(the gap may be fixed upstream) together with the pin."
        )
    return installed


def _read(file: Path) -> str:
    with file.open(encoding="utf-8", newline="") as source:
        return source.read()


def _target(site_packages: Path, hunk: Hunk) -> Path:
    file = site_packages / hunk.path
    if not file.is_file():
        raise PatchError(f"{hunk.patch}: {file} does not exist")
    return file


def _plan(site_packages: Path, hunks: list[Hunk], reverse: bool) -> tuple[dict[Path, str], dict[Path, str]]:
    """The files' current and wanted texts. Every hunk is checked before anything is written."""
    before: dict[Path, str] = {}
    after: dict[Path, str] = {}
    for hunk in hunks:
        file = _target(site_packages, hunk)
        if file not in before:
            before[file] = after[file] = _read(file)
        state = hunk.state(after[file])
        if state == PENDING and not reverse:
            after[file] = after[file].replace(hunk.old, hunk.new)
        elif state == APPLIED and reverse:
            after[file] = after[file].replace(hunk.new, hunk.old)
    return before, after


def _write(before: dict[Path, str], after: dict[Path, str]) -> list[Path]:
    changed = [file for file in after if after[file] != before[file]]
    for file in changed:
        tmp = file.with_name(file.name + ".patching")
        with tmp.open("w", encoding="utf-8", newline="") as out:  # newline="": keep the file's line endings
            out.write(after[file])
        tmp.replace(file)  # atomic: a crash leaves each file whole, patched or not
    return changed


def status(site_packages: Path, hunks: list[Hunk] | None = None) -> str:
    """The patches' state: "applied", "pristine" or "partial". PatchError when the version or a hunk mismatches."""
    check_version(site_packages)
    hunks = load_hunks() if hunks is None else hunks
    states = {hunk.state(_read(_target(site_packages, hunk))) for hunk in hunks}
    return {frozenset({APPLIED}): "applied", frozenset({PENDING}): "pristine"}.get(frozenset(states), "partial")


def apply(site_packages: Path, hunks: list[Hunk] | None = None) -> list[Path]:
    """Patch the package; returns the files changed (none when already applied)."""
    check_version(site_packages)
    return _write(*_plan(site_packages, load_hunks() if hunks is None else hunks, reverse=False))


def revert(site_packages: Path, hunks: list[Hunk] | None = None) -> list[Path]:
    """Undo the patches; returns the files changed (none when pristine)."""
    check_version(site_packages)
    return _write(*_plan(site_packages, load_hunks() if hunks is None else hunks, reverse=True))


def running_ministack_pid() -> int | None:
    """The pid of the local cloud's MiniStack (LOCALCLOUD_HOME's pid file) if one is running, else None."""
    from localcloud import launcher
    from localcloud.config import LocalCloudConfig

    cfg = LocalCloudConfig.from_env()
    ministack = next(service for service in launcher.services(cfg) if service.name == "ministack")
    return launcher.read_pid(ministack.pid_file(cfg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.ministack.patch", description=__doc__.split("\n")[0])
    parser.add_argument("--site-packages", type=Path, help="directory holding ministack/ (default: this Python's)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 unless every patch is applied")
    action.add_argument("--revert", action="store_true", help="restore the pristine package")
    args = parser.parse_args(argv)
    try:
        site = args.site_packages or default_site_packages()
        if args.check:
            state = status(site)
            print(f"{PACKAGE} patches: {state} in {site}")
            return 0 if state == "applied" else 1
        changed = revert(site) if args.revert else apply(site)
    except PatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    verb = "reverted" if args.revert else "patched"
    if changed:
        print(f"{PACKAGE} {verb}: " + ", ".join(str(file.relative_to(site)) for file in changed))
        running = running_ministack_pid()
        if running is not None:  # said only when it is true: a fresh install has nothing to restart
            print(f"MiniStack (pid {running}) still runs the old code: restart it to load the change (make down up)")
    else:
        print(f"{PACKAGE}: nothing to do, already {verb} ({site})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
