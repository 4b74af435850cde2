"""URI storage: the same test bodies run on a local folder and on the SeaweedFS S3 server.

``storage_root`` is a root URI that does not exist yet (local tmp path, or ``s3://bucket/prefix``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from batchsep.errors import StorageError
from batchsep.io import storage
from batchsep.io.storage import TMP_PREFIX

UNICODE_NAME = "ünï cöde dir/naïve näme with spaces — ✓.wav"


def write_tree(root: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        storage.write_bytes(storage.join(root, rel), data)


# ---------------------------------------------------------------------------- both backends


def test_write_read_roundtrip(storage_root):
    uri = storage.join(storage_root, "a", "blob.bin")
    payload = bytes(range(256)) * 1000
    storage.write_bytes(uri, payload)
    assert storage.read_bytes(uri) == payload
    storage.write_text(storage.join(storage_root, "t.txt"), "héllo ✓\n")
    assert storage.read_text(storage.join(storage_root, "t.txt")) == "héllo ✓\n"
    storage.write_bytes(uri, b"second")  # overwrite
    assert storage.read_bytes(uri) == b"second"
    storage.write_bytes(storage.join(storage_root, "empty"), b"")
    assert storage.read_bytes(storage.join(storage_root, "empty")) == b""


def test_open_input_is_seekable(storage_root):
    uri = storage.join(storage_root, "seek.bin")
    storage.write_bytes(uri, b"0123456789")
    with storage.open_input(uri) as f:
        f.seek(4)
        assert f.read(3) == b"456"
        f.seek(0)
        assert f.read() == b"0123456789"


def test_exists_and_is_file(storage_root):
    folder = storage.join(storage_root, "sub")
    uri = storage.join(folder, "x.wav")
    assert not storage.exists(storage_root) and not storage.exists(uri)
    assert not storage.is_file(uri)
    storage.write_bytes(uri, b"x")
    assert storage.exists(uri) and storage.is_file(uri)
    assert storage.exists(folder) and not storage.is_file(folder)
    assert storage.exists(storage_root) and not storage.is_file(storage_root)
    assert not storage.exists(storage.join(folder, "y.wav"))
    # a prefix of a name is not a folder
    assert not storage.exists(storage.join(storage_root, "su"))


def test_list_files_sorted_with_relative_paths_and_sizes(storage_root):
    files = {
        "b.wav": b"bb",
        "a.flac": b"a",
        "sub/c.WAV": b"ccc",
        "sub/deeper/d.txt": b"dddd",
        "sub/deeper/e.Flac": b"eeeee",
        "z/y/x/w/v/u/t/s/deep.wav": b"deep",
    }
    write_tree(storage_root, files)
    entries = storage.list_files(storage_root)
    assert [e.rel_path for e in entries] == sorted(files)
    for e in entries:
        assert e.size == len(files[e.rel_path])
        assert storage.normalize(e.uri) == storage.normalize(storage.join(storage_root, e.rel_path))
        assert storage.read_bytes(e.uri) == files[e.rel_path]
    audio = storage.list_files(storage_root, suffixes=[".wav", ".flac"])
    assert [e.rel_path for e in audio] == [
        "a.flac", "b.wav", "sub/c.WAV", "sub/deeper/e.Flac", "z/y/x/w/v/u/t/s/deep.wav",
    ]  # fmt: skip
    assert [e.rel_path for e in storage.list_files(storage_root, suffixes={".TXT"})] == [
        "sub/deeper/d.txt"
    ]
    assert storage.list_files(storage_root, suffixes=[".mp3"]) == []
    sub = storage.list_files(storage.join(storage_root, "sub") + "/")  # trailing slash is fine
    assert [e.rel_path for e in sub] == ["c.WAV", "deeper/d.txt", "deeper/e.Flac"]


def test_iter_files_streams_the_same_files(storage_root):
    """iter_files (folder by folder on S3, as walked locally) lists what list_files lists, one at a time."""
    files = {
        "b.wav": b"b",
        "a/x.wav": b"x",
        "a/b/c/d.flac": b"dd",
        "a.b/e.wav": b"e",
        "z.txt": b"z",
    }
    write_tree(storage_root, files)
    storage.write_bytes(storage.join(storage_root, "a", storage.TMP_PREFIX + "t"), b"")
    listed = storage.iter_files(storage_root)
    assert not isinstance(listed, list)
    assert sorted(listed, key=lambda e: e.rel_path) == storage.list_files(storage_root)
    (one,) = storage.iter_files(storage.join(storage_root, "a", "x.wav"))
    assert (one.rel_path, one.size) == ("x.wav", 1)
    with pytest.raises(StorageError):
        list(storage.iter_files(storage.join(storage_root, "nothing-here")))


def test_list_single_file(storage_root):
    uri = storage.join(storage_root, "one", "only.wav")
    storage.write_bytes(uri, b"12345")
    (entry,) = storage.list_files(uri)
    assert entry.rel_path == "only.wav" and entry.size == 5
    assert storage.read_bytes(entry.uri) == b"12345"
    assert storage.list_files(uri, suffixes=[".flac"]) == []


def test_unicode_and_spaces_in_names(storage_root):
    uri = storage.join(storage_root, UNICODE_NAME)
    storage.write_bytes(uri, "✓".encode())
    assert storage.exists(uri) and storage.is_file(uri)
    (entry,) = storage.list_files(storage_root)
    assert entry.rel_path == UNICODE_NAME
    assert storage.read_bytes(entry.uri) == "✓".encode()
    storage.delete(uri)
    assert not storage.exists(uri)


def test_atomic_writer_publishes_nothing_when_the_block_raises(storage_root):
    uri = storage.join(storage_root, "out", "part-00000.parquet")
    with pytest.raises(RuntimeError, match="boom"), storage.atomic_writer(uri) as f:
        f.write(b"partial " * 1000)
        raise RuntimeError("boom")
    assert not storage.exists(uri)
    if storage.exists(storage_root):  # locally the folder was created; it must be empty
        assert storage.list_files(storage_root) == []
        if not storage.is_s3(storage_root):
            assert os.listdir(storage.join(storage_root, "out")) == []  # no hidden temp left
    # an existing object keeps its old content when a rewrite fails
    storage.write_bytes(uri, b"old")
    with pytest.raises(KeyboardInterrupt), storage.atomic_writer(uri) as f:
        f.write(b"new but incomplete")
        raise KeyboardInterrupt
    assert storage.read_bytes(uri) == b"old"
    assert [e.rel_path for e in storage.list_files(storage_root)] == ["out/part-00000.parquet"]


def test_atomic_writer_success(storage_root):
    uri = storage.join(storage_root, "w.bin")
    with storage.atomic_writer(uri) as f:
        f.write(b"ab")
        f.write(b"cd")
        assert not storage.exists(uri)  # not visible before the block completes
    assert storage.read_bytes(uri) == b"abcd"


def test_atomic_writer_is_seekable(storage_root):
    """WAV writers seek back to patch the header once the data is written."""
    uri = storage.join(storage_root, "h.wav")
    with storage.atomic_writer(uri) as f:
        f.write(b"????" + b"payload" * 100)
        f.seek(0)
        f.write(b"RIFF")
        f.seek(0, os.SEEK_END)
        f.write(b"!")
    assert storage.read_bytes(uri) == b"RIFF" + b"payload" * 100 + b"!"


def test_deferred_writes_are_published_complete_by_wait(storage_root):
    """Handed to DeferredWrites, a local file gets its name (complete) and an S3 object is uploaded on the
    background thread, by the time wait() returns. A block that raises hands nothing over."""
    deferred = storage.DeferredWrites()
    uris = [storage.join(storage_root, "d", f"f{i}.bin") for i in range(5)]
    for i, uri in enumerate(uris):
        with storage.atomic_writer(uri, deferred=deferred) as f:
            f.write(b"x" * (1000 * i))
            f.seek(0)
            f.write(b"H")
    with (
        pytest.raises(RuntimeError),
        storage.atomic_writer(uris[0] + ".no", deferred=deferred) as f,
    ):
        f.write(b"partial")
        raise RuntimeError("boom")
    assert deferred.close() == {}
    for i, uri in enumerate(uris):
        assert storage.read_bytes(uri) == (b"H" + b"x" * (1000 * i - 1) if i else b"H")
    assert [e.rel_path for e in storage.list_files(storage_root)] == [
        f"d/f{i}.bin" for i in range(5)
    ]
    if not storage.is_s3(storage_root):
        assert sorted(os.listdir(storage.join(storage_root, "d"))) == [
            f"f{i}.bin" for i in range(5)
        ]


def test_deferred_write_that_fails_is_reported_by_uri_and_leaves_no_temp(tmp_path):
    deferred = storage.DeferredWrites()
    (tmp_path / "taken.wav").mkdir()  # renaming a file onto a folder fails
    bad, good = str(tmp_path / "taken.wav"), str(tmp_path / "good.wav")
    for uri in (bad, good):
        with storage.atomic_writer(uri, deferred=deferred) as f:
            f.write(b"data")
    errors = deferred.wait()
    assert list(errors) == [bad]
    assert isinstance(errors[bad], StorageError) and "taken.wav" in str(errors[bad])
    assert (tmp_path / "taken.wav").is_dir() and (tmp_path / "good.wav").read_bytes() == b"data"
    assert sorted(os.listdir(tmp_path)) == ["good.wav", "taken.wav"]  # no temporary left
    assert deferred.wait() == {}  # reported once


def test_temporary_files_are_never_listed(storage_root):
    write_tree(storage_root, {"keep.wav": b"k", f"sub/{TMP_PREFIX}abc-keep.wav": b"t"})
    storage.write_bytes(storage.join(storage_root, f"{TMP_PREFIX}x.wav"), b"t")
    assert [e.rel_path for e in storage.list_files(storage_root)] == ["keep.wav"]
    assert storage.list_files(storage_root, suffixes=[".wav"])[0].rel_path == "keep.wav"


def test_missing_things_raise_storage_error(storage_root):
    missing = storage.join(storage_root, "missing")
    with pytest.raises(StorageError, match=r"cannot list .*missing"):
        storage.list_files(missing)
    with pytest.raises(StorageError, match=r"cannot list"):
        storage.list_files(storage_root)  # the root itself does not exist yet
    storage.write_bytes(storage.join(storage_root, "present.txt"), b"p")
    with pytest.raises(StorageError, match=r"cannot list .*missing"):
        storage.list_files(missing)  # still missing next to an existing file
    with pytest.raises(StorageError, match=r"cannot read .*nothing\.wav"):
        storage.read_bytes(storage.join(storage_root, "nothing.wav"))
    with (
        pytest.raises(StorageError, match=r"cannot open .*nothing\.wav"),
        storage.open_input(storage.join(storage_root, "nothing.wav")),
    ):
        pass


def test_delete(storage_root):
    uri = storage.join(storage_root, "d", "gone.txt")
    storage.write_bytes(uri, b"x")
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # missing_ok by default
    with pytest.raises(StorageError, match=r"cannot delete .*gone\.txt"):
        storage.delete(uri, missing_ok=False)


def test_delete_many(storage_root):
    uris = [storage.join(storage_root, "m", f"{i:02d}.bin") for i in range(40)]
    for uri in uris:
        storage.write_bytes(uri, b"x")
    keep = storage.join(storage_root, "m", "keep.bin")
    storage.write_bytes(keep, b"k")
    storage.delete_many([*uris[:30], storage.join(storage_root, "m", "missing.bin")])
    left = sorted(e.rel_path for e in storage.list_files(storage_root))
    assert left == [f"m/{i:02d}.bin" for i in range(30, 40)] + ["m/keep.bin"]
    storage.delete_many([])


def test_check_writable_leaves_nothing(storage_root):
    storage.check_writable(storage_root)
    if storage.exists(storage_root):
        assert storage.list_files(storage_root) == []
        if not storage.is_s3(storage_root):
            assert os.listdir(storage_root) == []


def test_filesystem_for_pyarrow(storage_root):
    uri = storage.join(storage_root, "pa", "f.bin")
    storage.write_bytes(uri, b"via storage")
    fs, path = storage.filesystem(uri)
    assert fs.get_file_info(path).type == pafs.FileType.File
    with fs.open_input_stream(path) as f:
        assert f.read() == b"via storage"


# ---------------------------------------------------------------------------- URI arithmetic


def test_uri_helpers_s3():
    assert (
        storage.is_s3("s3://b/k") and not storage.is_s3("/b/k") and not storage.is_s3("file:///x")
    )
    assert storage.normalize("s3://b/p/") == "s3://b/p"
    assert storage.normalize("s3://b//") == "s3://b"
    assert storage.join("s3://b/p/", "x", "/y/", "z.wav") == "s3://b/p/x/y/z.wav"
    assert storage.parent("s3://b/p/x.wav") == "s3://b/p"
    assert storage.parent("s3://b/p/") == "s3://b"


def test_uri_helpers_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.normalize("rel/dir/") == str(tmp_path / "rel" / "dir")
    assert storage.normalize("file:///tmp/x/") == "/tmp/x"
    assert (
        storage.normalize("file:///tmp/%C3%A9t%C3%A9%201.wav") == "/tmp/été 1.wav"
    )  # percent-encoded
    assert storage.normalize("/") == "/"
    assert storage.join("/data", "a", "b.wav") == "/data/a/b.wav"
    assert storage.join("/data", "/etc/passwd") == "/data/etc/passwd"  # parts never escape the root
    assert storage.join("file:///data", "a") == "/data/a"
    assert storage.parent("/data/a/b.wav") == "/data/a"
    home = os.path.expanduser("~")
    assert storage.normalize("~/x") == os.path.join(home, "x")


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://host/x", "azure://c/x"])
def test_unsupported_scheme(uri):
    for fn in (storage.read_bytes, storage.list_files, storage.exists):
        with pytest.raises(StorageError, match="unsupported URI scheme"):
            fn(uri)


# ---------------------------------------------------------------------------- local only


def test_file_uri_is_the_local_path(tmp_path):
    storage.write_bytes(f"file://{tmp_path}/f/a.txt", b"via file uri")
    assert (tmp_path / "f" / "a.txt").read_bytes() == b"via file uri"
    assert [e.rel_path for e in storage.list_files(f"file://{tmp_path}")] == ["f/a.txt"]
    assert storage.read_bytes(str(tmp_path / "f" / "a.txt")) == b"via file uri"


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_check_writable_unwritable_local(tmp_path, where):
    # As root, chmod does not stop writes; a path under a regular file or in /proc cannot be made.
    if where == "under_a_file":
        blocker = tmp_path / "somefile"
        blocker.write_text("x")
        target = str(blocker / "sub")
    else:
        target = "/proc/batchsep-test-not-writable"
    with pytest.raises(
        StorageError, match=rf"cannot write {target}: "
    ) as e:  # the folder, not its probe
        storage.check_writable(target)
    assert TMP_PREFIX not in str(e.value)
    with pytest.raises(StorageError, match="cannot write"):
        storage.write_bytes(target + "/x.bin", b"x")
    with pytest.raises(StorageError, match="cannot create folder"):
        storage.makedirs(target + "/deeper")


def test_local_temp_leftover_not_listed(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"a")
    (tmp_path / f"{TMP_PREFIX}1234-a.wav").write_bytes(b"half-written")
    assert [e.rel_path for e in storage.list_files(str(tmp_path))] == ["a.wav"]


@pytest.mark.timeout(20)
def test_symlink_loops_do_not_hang_and_dangling_links_are_listed(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "real.wav").write_bytes(b"real")
    os.symlink(root, root / "sub" / "loop_to_root")  # directory loop: not followed
    os.symlink("..", root / "sub" / "loop_to_parent")
    os.symlink("self.wav", root / "self.wav")  # a link to itself
    os.symlink(root / "nowhere.wav", root / "dangling.wav")
    os.symlink(root / "sub" / "real.wav", root / "alias.wav")  # a link to a file: listed
    t0 = time.monotonic()
    entries = {e.rel_path: e for e in storage.list_files(str(root))}
    assert time.monotonic() - t0 < 5
    assert sorted(entries) == ["alias.wav", "dangling.wav", "self.wav", "sub/real.wav"]
    assert entries["alias.wav"].size == 4 and entries["sub/real.wav"].size == 4
    assert entries["dangling.wav"].size == -1 and entries["self.wav"].size == -1
    with pytest.raises(StorageError, match=r"cannot read .*dangling\.wav"):
        storage.read_bytes(entries["dangling.wav"].uri)
    with pytest.raises(StorageError, match=r"cannot read .*self\.wav"):
        storage.read_bytes(entries["self.wav"].uri)
    assert storage.read_bytes(entries["alias.wav"].uri) == b"real"


def test_remove_stale_temps(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    stale = [tmp_path / f"{TMP_PREFIX}1-x.wav", tmp_path / "a" / "b" / f"{TMP_PREFIX}2-y.parquet"]
    keep = [
        tmp_path / "x.wav",
        tmp_path / "a" / "b" / "y.parquet",
        tmp_path / "a" / "not.batchsep-tmp-",
    ]
    for p in stale + keep:
        p.write_bytes(b"z")
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # not followed
    assert storage.remove_stale_temps(str(tmp_path)) == 2
    assert [p.exists() for p in stale] == [False, False]
    assert all(p.exists() for p in keep)
    assert storage.remove_stale_temps(str(tmp_path)) == 0
    assert storage.remove_stale_temps(str(tmp_path / "absent")) == 0
    assert storage.remove_stale_temps("s3://bucket/prefix") == 0


def test_list_local_file_not_a_dir_and_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    assert storage.list_files(str(tmp_path / "empty")) == []
    with pytest.raises(StorageError, match="no such file or directory"):
        storage.list_files(str(tmp_path / "absent"))


# ---------------------------------------------------------------------------- S3 only


@pytest.mark.s3
def test_s3_wrong_secret_is_refused(s3_env, s3_server, monkeypatch):
    uri = s3_env + "/secret.txt"
    storage.write_bytes(uri, b"mine")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    storage._s3_filesystem.cache_clear()
    with pytest.raises(StorageError, match=r"cannot read s3://.*secret\.txt") as e:
        storage.read_bytes(uri)
    assert "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in str(e.value)  # says where to look
    with pytest.raises(StorageError, match=r"cannot write s3://"):
        storage.write_bytes(s3_env + "/intruder.txt", b"x")
    deferred = storage.DeferredWrites()  # an upload on the background thread fails the same way
    with storage.atomic_writer(s3_env + "/intruder.wav", deferred=deferred) as f:
        f.write(b"x")
    errors = deferred.close()
    assert list(errors) == [s3_env + "/intruder.wav"]
    assert "cannot write s3://" in str(errors[s3_env + "/intruder.wav"])
    with pytest.raises(StorageError):
        storage.list_files(s3_env)
    with pytest.raises(StorageError):
        storage.check_writable(s3_env)
    # and the raw client agrees: the server enforces the secret
    with pytest.raises(OSError, match=r"SIGNATURE_DOES_NOT_MATCH|ACCESS_DENIED"):
        s3_server.filesystem(secret_key="not-the-secret").get_file_info(uri[5:])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    storage._s3_filesystem.cache_clear()
    assert storage.read_bytes(uri) == b"mine"
    assert not storage.exists(s3_env + "/intruder.txt")
    assert not storage.exists(s3_env + "/intruder.wav")


def test_unreachable_s3_endpoint_names_the_endpoint_not_the_credentials(monkeypatch):
    """Port 1 on 127.0.0.1 refuses at once: the hint points at the endpoint, not at the keys."""
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    storage._s3_filesystem.cache_clear()
    try:
        with pytest.raises(StorageError) as e:
            storage.list_files("s3://bucket/prefix")
    finally:
        storage._s3_filesystem.cache_clear()
    assert "the S3 endpoint http://127.0.0.1:1 could not be reached" in str(e.value)
    assert "AWS_SECRET_ACCESS_KEY" not in str(e.value)


@pytest.mark.s3
def test_check_writable_refuses_a_missing_bucket(s3_env):
    """Some servers create a bucket on the first write to it: a typo in the output bucket is refused."""
    with pytest.raises(StorageError, match=r"no such bucket 'no-such-bucket-x1'"):
        storage.check_writable("s3://no-such-bucket-x1/out")
    assert not storage.exists("s3://no-such-bucket-x1")
    storage.check_writable(s3_env + "/new/folder")  # a new prefix in an existing bucket is fine


@pytest.mark.s3
def test_s3_fixture_gives_fresh_empty_bucket(s3_env, s3_server):
    assert s3_env.startswith("s3://") and s3_env.endswith("/prefix")
    bucket = s3_env[5:].split("/")[0]
    assert storage.list_files("s3://" + bucket) == []
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server.endpoint
    assert s3_server.new_bucket() != bucket
    assert s3_server.startup_s < 30


@pytest.mark.s3
def test_s3_server_is_local_only(s3_server):
    assert s3_server.endpoint.startswith("http://127.0.0.1:")
    assert s3_server.alive()
    ports = {p for pair in s3_server.ports.values() for p in pair}
    assert len(ports) == 10


def test_storage_root_is_fresh(storage_root):
    assert not storage.exists(storage_root)
    assert Path(storage_root).name == "root" or storage.is_s3(storage_root)


def test_first_missing_folder_and_remove_if_empty(tmp_path):
    """What a run created and left empty is removed; a folder holding a file, or one that was there, stays."""
    target = tmp_path / "a" / "b" / "c"
    assert storage.first_missing_folder(str(target)) == str(tmp_path / "a")
    assert storage.first_missing_folder(str(tmp_path)) is None
    assert storage.first_missing_folder("s3://bucket/x") is None
    storage.check_writable(str(target))  # the probe's folders are not left behind
    assert not (tmp_path / "a").exists()
    target.mkdir(parents=True)
    assert storage.remove_if_empty(str(tmp_path / "a")) and not (tmp_path / "a").exists()
    target.mkdir(parents=True)
    (target / "f.txt").write_text("x")
    assert not storage.remove_if_empty(str(tmp_path / "a")) and (target / "f.txt").exists()
    assert not storage.remove_if_empty(None) and not storage.remove_if_empty(str(tmp_path / "nope"))
