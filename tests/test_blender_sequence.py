"""Numbered frames as one sequence (blender_addon/sequence.py, no Blender needed): what Blender's
image sequences will find, or an error naming the files."""

from __future__ import annotations

from pathlib import Path

import pytest

from blender_addon.sequence import FrameError, find_frames

SUFFIXES = (".png", ".exr")


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_a_folder_gives_its_frames_in_number_order(tmp_path):
    folder = touch(tmp_path / "f", "a_0010.png", "a_0009.png", "a_0011.png",
                   "a_0009.png.sddr.json", "notes.txt")
    frames = find_frames(folder, SUFFIXES, "depth frames")
    assert [f.name for f in frames.files] == ["a_0009.png", "a_0010.png", "a_0011.png"]
    assert (frames.first, frames.last, len(frames)) == (9, 11, 3)


def test_a_file_picks_its_own_sequence_among_others(tmp_path):
    folder = touch(tmp_path / "f", "a_1.png", "a_2.png", "b_1.png", "b_2.png", "b_3.png")
    frames = find_frames(folder / "b_2.png", SUFFIXES, "depth frames")
    assert [f.name for f in frames.files] == ["b_1.png", "b_2.png", "b_3.png"]
    with pytest.raises(FrameError, match=r"several numbered sequences \(a_#.png, b_#.png\)"):
        find_frames(folder, SUFFIXES, "depth frames")


def test_one_numbered_file_is_a_one_frame_sequence(tmp_path):
    frames = find_frames(touch(tmp_path / "f", "still_07.exr") / "still_07.exr", SUFFIXES,
                         "depth frames")
    assert (frames.first, len(frames)) == (7, 1)


@pytest.mark.parametrize("names, message", [
    (("d_1.png", "d_2.png", "d_4.png", "d_7.png"), r"frames 1…7 in '.*' miss 3 number\(s\): "
                                                   r"3, 5, 6; a sequence must have no gap"),
    (("d_01.png", "d_2.png"), r"'d_2.png' is numbered unlike 'd_01.png' \(write every number "
                              "with 2 digits"),
    (("d.png", "notes.txt"), r"depth frames: folder '.*' holds no numbered .png/.exr files"),
])
def test_gaps_padding_and_empty_folders_are_refused_naming_the_files(tmp_path, names, message):
    with pytest.raises(FrameError, match=message):
        find_frames(touch(tmp_path / "f", *names), SUFFIXES, "depth frames")


def test_a_file_that_is_missing_unnumbered_or_of_another_kind_is_named(tmp_path):
    folder = touch(tmp_path / "f", "plain.png", "d_1.npy")
    for path, message in ((folder / "gone_1.png", "does not exist"),
                          (folder / "plain.png", "has no frame number in its name"),
                          (folder / "d_1.npy", ".npy extension is not usable here")):
        with pytest.raises(FrameError, match=f"depth frames '.*{path.name}'.*{message}"):
            find_frames(path, SUFFIXES, "depth frames")
