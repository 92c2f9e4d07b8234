import hashlib

from depth_core.file_digest import file_digest


def test_digest_equals_hashlib_across_chunk_boundaries(tmp_path):
    data = bytes(range(256)) * 41  # not a multiple of the chunk size
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_digest(path, chunk=1000) == hashlib.sha256(data).hexdigest()
    assert file_digest(path, "md5", chunk=7) == hashlib.md5(data).hexdigest()
