"""`zhibao case attach|materials|material` (DESIGN §8), run as the real program.

A city, a town and a village (homes made as `zhibao init` makes them, the shipped
catalogue published by the city and handed down) are built once per module and copied for
each test. The village receives a case of ITEM (its materials: 申请表;残疾人证;户口簿) and
attaches scans to it. Every refusal is one line on stderr, exit 1, and leaves the log (the
node's head) and the blob store (the files under `materials/`) as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.node import NODE_DB
from sync.store import Store
from tests.hostile.harness import zhibao_measured
from tests.hostile.network import one_line_error
from tests.support.servers import ZHIBAO, cli_env, zhibao
from tests.support.topology import (
    CITY,
    TOWN,
    VILLAGE,
    Topology,
    build_catalogued,
    copy_topology,
    hand_up,
)

ITEM = "330782-MZ-002"  # materials 申请表;残疾人证;户口簿; received at villages, town decides
LISTED_KEYS = ["name", "sha256", "size", "media_type", "state"]  # DESIGN §8, fixed
MB = 2**20


# --- the network and the command ---------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Topology:
    return build_catalogued(tmp_path_factory.mktemp("materials-cli"))


@pytest.fixture
def net(template: Topology, tmp_path: Path) -> Topology:
    return copy_topology(template, tmp_path / "net")


@pytest.fixture
def village(net: Topology) -> Path:
    return net.home(VILLAGE)


def ok(home: Path, *args: str, lang: str = "en") -> str:
    done = zhibao(home, *args, lang=lang)
    assert done.returncode == 0, f"zhibao {' '.join(args)}: {done.stderr}"
    assert done.stderr == "", done.stderr
    return done.stdout


def ok_json(home: Path, *args: str) -> Any:
    return json.loads(ok(home, *args, "--json"))


def refused(home: Path, *args: str, lang: str = "en") -> str:
    """The one line of a refused command, after checking it changed nothing at `home`."""
    before = snapshot(home)
    line = one_line_error(zhibao(home, *args, lang=lang))
    assert snapshot(home) == before, f"zhibao {' '.join(args)} changed {home.name}"
    return line


def snapshot(home: Path) -> tuple[dict[str, tuple[int, bytes]], list[str]]:
    """The head of every log held at `home` (read from its database: a refused command
    must not have appended, nor received, anything), and every file of its blob store."""
    with Store(home / NODE_DB) as store:
        return store.heads(), blob_files(home)


def blob_files(home: Path) -> list[str]:
    root = home / "materials"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def receive(home: Path, applicant: str = "张三") -> str:
    return ok(home, "case", "receive", "--item", ITEM, "--applicant", applicant).strip()


def scan(folder: Path, name: str, size: int = 100_000, *, seed: str = "") -> Path:
    """A file of `size` bytes, different for each (`name`, `seed`)."""
    folder.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(f"{name}/{seed}".encode()).digest() * 2048  # 64 KiB
    path = folder / name
    with open(path, "wb") as out:
        left = size
        while left:
            left -= out.write(block[: min(left, len(block))])
    return path


def sha(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def set_setting(home: Path, line: str) -> None:
    """Add `line` to node.toml's `[settings]` (its last table)."""
    toml = home / "node.toml"
    text = toml.read_text("utf-8")
    assert text.rstrip().splitlines()[-1] == "[settings]", text
    toml.write_text(text.rstrip("\n") + "\n" + line + "\n", "utf-8")


# --- attach, list, write out ---------------------------------------------------------------


def test_materials_cli_attach_one_then_list_and_write_out(village: Path, tmp_path: Path) -> None:
    case_id = receive(village)
    head = ok_json(village, "status")["heads"][VILLAGE]
    path = scan(tmp_path / "in", "申请表.pdf", 300_000)
    [named] = ok_json(village, "case", "attach", case_id, str(path))
    assert ok_json(village, "status")["heads"][VILLAGE] == head + 1  # one signed entry
    assert (named["name"], named["file"], named["sha256"]) == ("申请表", "申请表.pdf", sha(path))
    assert (named["size"], named["media_type"]) == (300_000, "application/pdf")
    assert blob_files(village) == [f"{sha(path)[:2]}/{sha(path)}"]

    [listed] = ok_json(village, "case", "materials", case_id)
    assert set(LISTED_KEYS) <= set(listed), listed
    assert {k: listed[k] for k in LISTED_KEYS} == {
        "name": "申请表", "sha256": sha(path), "size": 300_000,
        "media_type": "application/pdf", "state": "here",
    }  # fmt: skip
    table = ok(village, "case", "materials", case_id)
    assert "申请表" in table and "here" in table and "application/pdf" in table

    ways = ["申请表", sha(path), sha(path).upper(), sha(path)[:12], sha(path)[:8]]
    for n, wanted in enumerate(ways):
        out = tmp_path / "out" / f"{n}.pdf"
        out.parent.mkdir(exist_ok=True)
        said = ok(village, "case", "material", case_id, wanted, "--out", str(out))
        assert out.read_bytes() == path.read_bytes(), wanted
        assert str(out) in said
    written = ok_json(village, "case", "material", case_id, "申请表", "--out", str(out))
    assert written["sha256"] == sha(path) and written["out"] == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == [f"{n}.pdf" for n in range(5)]


def test_materials_cli_attach_several_names_them_from_the_catalogue(
    village: Path, tmp_path: Path
) -> None:
    case_id = receive(village)
    head = ok_json(village, "status")["heads"][VILLAGE]
    files = [
        scan(tmp_path, "户口簿_第1页.jpg"), scan(tmp_path, "残疾人证.PNG"),
        scan(tmp_path, "site photo.pdf"), scan(tmp_path, "notes"),
    ]  # fmt: skip
    named = ok_json(village, "case", "attach", case_id, *map(str, files))
    assert ok_json(village, "status")["heads"][VILLAGE] == head + 1  # one entry for all
    assert [(m["name"], m["media_type"]) for m in named] == [
        ("户口簿", "image/jpeg"), ("残疾人证", "image/png"), ("site photo", "application/pdf"),
        ("notes", "application/octet-stream"),
    ]  # fmt: skip
    listed = ok_json(village, "case", "materials", case_id)
    assert [(m["name"], m["sha256"], m["state"]) for m in listed] == [
        (m["name"], sha(f), "here") for m, f in zip(named, files, strict=True)
    ]
    assert len(blob_files(village)) == 4
    said = ok(village, "case", "attach", case_id, str(scan(tmp_path, "申请表-2.tif")))
    assert said.startswith(f"{case_id}: attached 申请表 (") and "sha256" in said


def test_materials_cli_material_option_names_every_file(village: Path, tmp_path: Path) -> None:
    case_id = receive(village)
    first, second = scan(tmp_path, "IMG_0001.jpg"), scan(tmp_path, "IMG_0002.jpg")
    ok(village, "case", "attach", case_id, str(first), str(second), "--material", " 现场照片 ")
    listed = ok_json(village, "case", "materials", case_id)
    assert [m["name"] for m in listed] == ["现场照片", "现场照片"]
    line = refused(village, "case", "material", case_id, "现场照片", "--out", str(tmp_path / "x"))
    assert "several materials 现场照片" in line
    assert sha(first)[:12] in line and sha(second)[:12] in line
    assert not (tmp_path / "x").exists()
    out = tmp_path / "second.jpg"
    ok(village, "case", "material", case_id, sha(second)[:10], "--out", str(out))
    assert out.read_bytes() == second.read_bytes()


def test_materials_cli_same_bytes_are_stored_once(village: Path, tmp_path: Path) -> None:
    case_id = receive(village)
    other = receive(village, "李四")
    path = scan(tmp_path, "户口簿.jpg", 200_000)
    copy = tmp_path / "copy of 户口簿.pdf"
    copy.write_bytes(path.read_bytes())
    ok(village, "case", "attach", case_id, str(path), str(copy))
    ok(village, "case", "attach", case_id, str(path))
    ok(village, "case", "attach", other, str(copy))
    assert blob_files(village) == [f"{sha(path)[:2]}/{sha(path)}"]  # no temporary left either
    listed = ok_json(village, "case", "materials", case_id)
    assert [m["sha256"] for m in listed] == [sha(path)] * 3
    assert {m["state"] for m in listed} == {"here"}
    out = tmp_path / "out.jpg"
    ok(village, "case", "material", case_id, "户口簿", "--out", str(out))  # one hash: not ambiguous
    assert out.read_bytes() == path.read_bytes()
    assert [m["name"] for m in ok_json(village, "case", "materials", other)] == ["户口簿"]


@pytest.mark.slow
def test_materials_cli_big_file_is_streamed_both_ways(village: Path, tmp_path: Path) -> None:
    case_id = receive(village)
    set_setting(village, "material_max_mb = 200")
    big = tmp_path / "户口簿.tif"
    with open(big, "wb") as handle:  # 150 MB: more than the bound below, were it read whole
        handle.seek(150 * MB - 7)
        handle.write(b"the end")
    done, rss = zhibao_measured(village, "case", "attach", case_id, str(big))
    assert done.returncode == 0, done.stderr
    assert rss < 100 * MB, f"case attach of 150 MB peaked at {rss / MB:.0f} MB"
    out = tmp_path / "out.tif"
    done, rss = zhibao_measured(village, "case", "material", case_id, "户口簿", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert rss < 100 * MB, f"case material of 150 MB peaked at {rss / MB:.0f} MB"
    assert out.stat().st_size == big.stat().st_size
    with open(out, "rb") as written:
        written.seek(-7, os.SEEK_END)
        assert written.read() == b"the end"
    assert sha(out) == sha(big)


# --- refusals ----------------------------------------------------------------------------


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.jpg")
    return folder / "pipe.jpg"


def _folder(folder: Path) -> Path:
    (folder / "scans").mkdir()
    return folder / "scans"


ATTACH_MISTAKES = [  # (id, what is named instead of a good file, what the line says)
    ("missing_file", lambda f: f / "nowhere.jpg", "no such file or directory"),
    ("directory", _folder, "it is a directory"),
    ("fifo", _fifo, "it is not a regular file"),
]


@pytest.mark.parametrize(
    ("make", "says"), [m[1:] for m in ATTACH_MISTAKES], ids=[m[0] for m in ATTACH_MISTAKES]
)
def test_materials_cli_attach_refuses_what_is_not_a_file(
    village: Path, tmp_path: Path, make: Any, says: str
) -> None:
    case_id = receive(village)
    good = scan(tmp_path, "申请表.pdf")
    bad = make(tmp_path)
    for files in ([bad], [good, bad], [bad, good]):
        line = refused(village, "case", "attach", case_id, *map(str, files))
        assert line.startswith(f"zhibao: cannot read {bad}") and says in line, line
    assert ok_json(village, "case", "materials", case_id) == []
    assert blob_files(village) == []


@pytest.mark.parametrize("mistake", ["more_files_than_an_entry_names", "material_name_too_long"])
def test_materials_cli_attach_the_log_would_refuse_stores_nothing(
    village: Path, tmp_path: Path, mistake: str
) -> None:
    """An attach whose entry the log refuses (101 files; a name over 2,000 characters) is
    refused before a byte is stored, like any other refusal."""
    case_id = receive(village)
    if mistake == "more_files_than_an_entry_names":
        files = [str(scan(tmp_path, f"页{n}.jpg", 1000)) for n in range(101)]
        line = refused(village, "case", "attach", case_id, *files)
    else:
        path = str(scan(tmp_path, "申请表.pdf"))
        line = refused(village, "case", "attach", case_id, path, "--material", "名" * 2001)
    assert "case.attached" in line, line
    assert blob_files(village) == []
    assert ok_json(village, "case", "materials", case_id) == []


def test_materials_cli_unknown_case_or_material_is_one_line(village: Path, tmp_path: Path) -> None:
    case_id = receive(village)
    path = scan(tmp_path, "申请表.pdf")
    ghost = f"{VILLAGE}-20250101-0099"
    line = refused(village, "case", "attach", ghost, str(path))
    assert ghost in line
    assert blob_files(village) == []
    assert ghost in refused(village, "case", "materials", ghost)
    ok(village, "case", "attach", case_id, str(path))
    out = tmp_path / "out.pdf"
    for wanted in ("户口簿", "0" * 64, sha(path)[:7], sha(path)[1:12]):  # a prefix needs 8
        line = refused(village, "case", "material", case_id, wanted, "--out", str(out))
        assert f"has no material {wanted}" in line, line
    assert ghost in refused(village, "case", "material", ghost, "申请表", "--out", str(out))
    line = refused(village, "case", "material", case_id, "申请表", "--out",
                   str(tmp_path / "no such folder" / "out.pdf"))  # fmt: skip
    assert "no such folder" in line
    assert not out.exists()


def test_materials_cli_file_over_the_limit_is_refused(village: Path, tmp_path: Path) -> None:
    case_id = receive(village)
    set_setting(village, "material_max_mb = 1")
    line = refused(village, "case", "attach", case_id, str(scan(tmp_path, "big.pdf", MB + 1)))
    assert "1 MB" in line and "material_max_mb" in line, line
    assert blob_files(village) == []
    small = scan(tmp_path, "申请表.pdf", 1000)
    line = refused(village, "case", "attach", case_id, str(small), str(tmp_path / "big.pdf"))
    assert "1 MB" in line and blob_files(village) == []
    exact = scan(tmp_path, "户口簿.jpg", MB)  # at the limit is within it
    ok(village, "case", "attach", case_id, str(exact))
    assert [m["size"] for m in ok_json(village, "case", "materials", case_id)] == [MB]


@pytest.mark.parametrize("damage", ["flipped", "truncated", "deleted"])
def test_materials_cli_tampered_blob_is_not_written_out(
    village: Path, tmp_path: Path, damage: str
) -> None:
    case_id = receive(village)
    work = tmp_path / "work"
    path = scan(work, "户口簿.jpg", 200_000)
    ok(village, "case", "attach", case_id, str(path))
    stored = village / "materials" / sha(path)[:2] / sha(path)
    data = bytearray(stored.read_bytes())
    if damage == "flipped":
        data[150_000] ^= 1
        stored.write_bytes(bytes(data))
    elif damage == "truncated":
        stored.write_bytes(bytes(data[:-1]))
    else:
        stored.unlink()
    out = work / "out.jpg"
    line = refused(village, "case", "material", case_id, "户口簿", "--out", str(out))
    assert "no longer matches its hash" in line and sha(path) in line, line
    assert not out.exists() and not out.with_name("out.jpg.part").exists()
    out.write_bytes(b"what was there before")
    refused(village, "case", "material", case_id, sha(path), "--out", str(out))
    assert out.read_bytes() == b"what was there before"
    assert sorted(p.name for p in work.iterdir()) == ["out.jpg", "户口簿.jpg"]


def test_materials_cli_attach_only_where_the_case_is(net: Topology, tmp_path: Path) -> None:
    village, town, city = net.home(VILLAGE), net.home(TOWN), net.home(CITY)
    case_id = receive(village)
    path = scan(tmp_path, "申请表.pdf")

    def relay() -> None:
        with net.open(VILLAGE) as v, net.open(TOWN) as t, net.open(CITY) as c:
            assert not hand_up(v, t)["rejected"]
            assert not hand_up(t, c)["rejected"]

    relay()
    for home in (town, city):  # both hold the case; neither holds custody nor is its origin
        assert ok_json(home, "case", "show", case_id)["holder"] == VILLAGE
        line = refused(home, "case", "attach", case_id, str(path))
        assert f"case {case_id} is held by {VILLAGE}" in line, line
        assert ok_json(home, "case", "materials", case_id) == []
    ok(village, "case", "forward", case_id)
    relay()
    [named] = ok_json(town, "case", "attach", case_id, str(path))  # forwarded to the town
    assert named["sha256"] == sha(path)
    refused(city, "case", "attach", case_id, str(path))
    ok(village, "case", "attach", case_id, str(path))  # the origin still may


def test_materials_cli_speaks_chinese(village: Path, tmp_path: Path) -> None:
    case_id = receive(village)
    path = scan(tmp_path, "户口簿.jpg")
    said = ok(village, "case", "attach", case_id, str(path), lang="zh")
    assert said.startswith(f"{case_id}：已添加 户口簿（"), said
    table = ok(village, "case", "materials", case_id, lang="zh")
    assert "材料" in table and "本机已有" in table and "here" not in table
    out = tmp_path / "out.jpg"
    assert "已将办件" in ok(village, "case", "material", case_id, "户口簿", "--out", str(out),
                           lang="zh")  # fmt: skip
    line = refused(village, "case", "material", case_id, "照片", "--out", str(out), lang="zh")
    assert f"办件 {case_id} 没有材料 照片" in line, line
    set_setting(village, "material_max_mb = 1")
    line = refused(village, "case", "attach", case_id, str(scan(tmp_path, "b.pdf", 2 * MB)),
                   lang="zh")  # fmt: skip
    assert "文件超过本节点的上限（1 MB" in line, line
    line = refused(village, "case", "attach", case_id, str(tmp_path / "无.jpg"), lang="zh")
    assert "无.jpg" in line and "Traceback" not in line
    (village / "materials" / sha(path)[:2] / sha(path)).write_bytes(b"x")
    line = refused(village, "case", "material", case_id, "户口簿", "--out", str(out), lang="zh")
    assert "与其哈希不符" in line, line


# --- a disk that fills up ------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at tmp_path/tiny (root only: skipped otherwise)."""
    where = tmp_path / "tiny"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_materials_cli_full_disk_attaches_nothing(
    village: Path, tmp_path: Path, tiny_disk: Path
) -> None:
    case_id = receive(village)
    store = village / "materials"  # the blob store on the tiny disk
    if store.exists():
        store.rmdir()  # empty: nothing attached yet
    store.symlink_to(tiny_disk, target_is_directory=True)
    line = refused(village, "case", "attach", case_id, str(scan(tmp_path, "户口簿.jpg", 2 * MB)))
    assert "the disk is full" in line, line
    assert ok_json(village, "case", "materials", case_id) == []
    assert [p for p in tiny_disk.rglob("*") if p.is_file()] == []
    small = scan(tmp_path, "申请表.pdf", 100_000)  # room is back: a file that fits goes in
    ok(village, "case", "attach", case_id, str(small))
    assert [m["state"] for m in ok_json(village, "case", "materials", case_id)] == ["here"]


def test_materials_cli_full_disk_writes_nothing_out(
    village: Path, tmp_path: Path, tiny_disk: Path
) -> None:
    case_id = receive(village)
    path = scan(tmp_path, "户口簿.jpg", 2 * MB)
    ok(village, "case", "attach", case_id, str(path))
    out = tiny_disk / "户口簿.jpg"
    line = refused(village, "case", "material", case_id, "户口簿", "--out", str(out))
    assert "the disk is full" in line, line
    assert list(tiny_disk.iterdir()) == []


def test_materials_cli_file_size_limit_attaches_nothing(village: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE (EFBIG, not ENOSPC: a file-size cap, as on a FAT32 stick) mid-write."""
    case_id = receive(village)
    path = scan(tmp_path, "户口簿.jpg", 4 * MB)
    before = snapshot(village)

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * MB, 2 * MB))

    done = subprocess.run(
        [ZHIBAO, "case", "attach", case_id, str(path), "--home", str(village)],
        capture_output=True, text=True, env=cli_env(), timeout=120, check=False,
        preexec_fn=capped,
    )  # fmt: skip
    line = one_line_error(done)
    assert "nothing was attached" in line, line
    assert snapshot(village) == before
    assert ok_json(village, "case", "materials", case_id) == []
