"""Reading and writing videos, images and mask tracks.

Videos are decoded with PyAV (it reports the header frame count, so a truncated file is detected, and whether
an audio stream is present) and written with PyAV as browser-playable H.264 yuv420p MP4 (`+faststart`), with
the audio stream of a source file copied through on request. Images go through OpenCV. Every writer goes
through `atomic_write`: the data lands under a temporary name in the target's directory and is renamed when
complete, so a crash or a bad input never leaves a partial file under the final name.

Mask tracks `[F, H, W]` uint8 in {0, 1} are read from any of (`read_mask`):
- a video file (`.mp4`, `.mov`, `.mkv`, `.avi`, `.webm`, `.m4v`): grey level >= 128 is 1 (lossy codecs blur
  edges, so video masks are thresholded rather than checked for binarity);
- a folder of images (`.png`, ...), one per frame in natural name order (`f2.png` before `f10.png`);
  hidden files (`.DS_Store`, the `._*` resource forks macOS leaves on other disks) are ignored;
- a single image file: a static mask repeated over `num_frames` frames;
- `.npz` (array under key ``mask``, or its only array) or `.npy`: `[F, H, W]` (`[F, H, W, 1]` accepted) or
  `[H, W]` (static);
- `.json` box track, see `swapjax.data.tracks`.
Lossless formats must already be binary: values {0, 1}, {0, 255} or {0, 65535}; anything else is an error.
"""

from __future__ import annotations

import pathlib
import re
from fractions import Fraction

import av
import cv2
import numpy as np

from swapjax.data import masks as mask_ops
from swapjax.data import tracks
from swapjax.atomic import atomic_write
from swapjax.data.validate import check_file, check_finite, check_fps, check_mask, check_video
from swapjax.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MASK_FILE_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES + (".npz", ".npy", ".json")  # a mask track that is one file
WRITE_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
_BINARY_HIGH = (1, 255, 65535)


def read_video(path: str | pathlib.Path) -> tuple[np.ndarray, float, bool]:
    """Decodes all frames: returns (uint8 RGB `[F, H, W, 3]`, frames per second, has an audio stream)."""
    name = f"video {str(path)!r}"
    path = check_file(path, name)
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{name} has no video stream: pass a video file")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            has_audio = bool(container.streams.audio)
            expected = stream.frames
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))  # [H, W, 3]
    except av.FFmpegError as err:
        raise InputError(f"{name} cannot be decoded ({err.strerror or err}): the file is truncated, corrupt "
                         "or not a video; re-export it") from err
    if not frames:
        raise InputError(f"{name} has zero frames: re-export it with at least one frame")
    if expected and len(frames) < expected:
        raise InputError(f"{name} is truncated: its header lists {expected} frames but only {len(frames)} "
                         "decode; re-export or re-download it")
    if len({f.shape for f in frames}) > 1:
        raise InputError(f"{name} changes frame size mid-stream ({sorted({f.shape[:2] for f in frames})}): "
                         "re-encode it at one resolution")
    fps = check_fps(float(rate) if rate else float("nan"), name)
    return np.stack(frames), fps, has_audio  # [F, H, W, 3]


def _check_output_path(path: pathlib.Path, suffixes: tuple[str, ...], what: str) -> None:
    if path.suffix.lower() not in suffixes:
        raise InputError(f"output {what} {str(path)!r} has suffix {path.suffix!r}; use one of {suffixes}")


def write_video(path: str | pathlib.Path, frames: np.ndarray, fps: float,
                audio_from: str | pathlib.Path | None = None, *, crf: int = 18,
                pad_to_even: bool = False) -> None:
    """Writes uint8 RGB `[F, H, W, 3]` frames as H.264 yuv420p at `fps`, atomically.

    `audio_from`: a media file whose first audio stream is copied (not re-encoded) into the output, cut at the
    video's duration; a file without audio adds none. yuv420p needs even sizes: odd ones are an error unless
    `pad_to_even`, which repeats the last row/column.
    """
    path = pathlib.Path(path)
    name = f"frames for output video {str(path)!r}"
    _check_output_path(path, WRITE_VIDEO_SUFFIXES, "video")
    frames = check_video(frames, name)
    if frames.dtype != np.uint8:
        raise InputError(f"{name} have dtype {frames.dtype}; expected uint8 in 0..255: convert with "
                         "np.clip((x + 1) * 127.5, 0, 255).round().astype(np.uint8)")
    fps = check_fps(fps, f"output video {str(path)!r}")
    num_frames, height, width, _ = frames.shape
    if height % 2 or width % 2:
        if not pad_to_even:
            raise InputError(f"{name} are {height}x{width} (HxW); H.264 yuv420p needs even sizes: crop or pad "
                             "to even sizes, or pass pad_to_even=True")
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        height, width = frames.shape[1:3]
    source = None
    if audio_from is not None:
        source_name = f"audio source {str(audio_from)!r}"
        try:
            source = av.open(str(check_file(audio_from, source_name)))
        except av.FFmpegError as err:
            raise InputError(f"{source_name} cannot be opened ({err.strerror or err}): pass a readable media "
                             "file or no audio source") from err
    rate = Fraction(fps).limit_denominator(10_000)
    try:
        with atomic_write(path) as tmp, av.open(str(tmp), "w", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf)}
            audio = _audio_packets(source, out, num_frames / float(rate))
            for i, frame in enumerate(frames):
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                video_frame.pts = i
                for packet in stream.encode(video_frame):
                    out.mux(packet)
                while audio and audio[0][0] < (i + 1) / float(rate):  # interleave audio up to this frame's end
                    out.mux(audio.pop(0)[1])
            for packet in stream.encode():
                out.mux(packet)
            for _, packet in audio:
                out.mux(packet)
    finally:
        if source is not None:
            source.close()


def _audio_packets(source, out, duration: float) -> list:
    """Demuxes the first audio stream of `source` into (start seconds, packet) pairs retargeted to `out`."""
    if source is None or not source.streams.audio:
        return []
    in_stream = source.streams.audio[0]
    out_stream = out.add_stream_from_template(in_stream)
    packets = []
    for packet in source.demux(in_stream):
        if packet.dts is None or packet.pts is None:  # the demuxer's final flush packet
            continue
        start = float(packet.pts * in_stream.time_base)
        if start >= duration:
            break
        packet.stream = out_stream
        packets.append((start, packet))
    return packets


def read_image(path: str | pathlib.Path) -> np.ndarray:
    """Reads an image as uint8 RGB `[H, W, 3]`; RGBA is composited onto neutral grey, grey is repeated."""
    name = f"image {str(path)!r}"
    path = check_file(path, name)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{name} cannot be decoded as an image: pass a PNG or JPEG file")
    image = _to_uint8(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)  # [H, W, 3]
    elif image.shape[-1] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.shape[-1] == 4:
        image = mask_ops.composite_on_grey(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
    else:
        raise InputError(f"{name} has {image.shape[-1]} channels; expected grey, RGB or RGBA")
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    return image


def write_image(path: str | pathlib.Path, image: np.ndarray) -> None:
    """Writes uint8 `[H, W]`, `[H, W, 3]` (RGB) or `[H, W, 4]` (RGBA) as PNG/JPEG, atomically."""
    path = pathlib.Path(path)
    _check_output_path(path, (".png", ".jpg", ".jpeg"), "image")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise InputError(f"image for {str(path)!r} is {image.dtype} {list(image.shape)}; expected uint8 "
                         "[H, W], [H, W, 3] or [H, W, 4]")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[-1] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise InputError(f"image for {str(path)!r} could not be encoded as {path.suffix}")
    with atomic_write(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _natural_key(path: pathlib.Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _binarize(raw: np.ndarray, name: str) -> np.ndarray:
    """Maps a lossless mask holding {0, high} (high in 1, 255, 65535) to uint8 {0, 1}."""
    if raw.dtype == np.bool_:
        return raw.astype(np.uint8)
    if np.issubdtype(raw.dtype, np.floating):
        check_finite(raw, name)
    values = np.unique(raw)
    nonzero = values[values != 0]
    if len(nonzero) > 1 or (len(nonzero) == 1 and float(nonzero[0]) not in _BINARY_HIGH):
        shown = ", ".join(f"{v:g}" for v in values[:6].tolist()) + (", ..." if len(values) > 6 else "")
        raise InputError(f"{name} is not binary: it holds values {{{shown}}}; save it with only 0 and 1 "
                         "(or 0 and 255), e.g. threshold with (mask > 0.5) for 0..1 floats or (mask > 127) for 8 bits")
    return (raw != 0).astype(np.uint8)


def _read_mask_image(path: pathlib.Path, name: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{name}: frame {path.name!r} cannot be decoded as an image: re-export it as PNG")
    if image.ndim == 3:
        image = image[..., :3].max(axis=-1)  # colour masks: any lit channel counts; alpha is ignored
    return image  # [H, W]


def _read_mask_folder(path: pathlib.Path, name: str) -> np.ndarray:
    files = sorted((f for f in path.iterdir() if not f.name.startswith(".") and f.is_file()
                    and f.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise InputError(f"{name} is a folder with no images ({', '.join(IMAGE_SUFFIXES)}; hidden files are "
                         "ignored): put one mask image per frame in it, or pass a single image as a static mask")
    frames = []
    for f in files:
        frame = _read_mask_image(f, name)
        if frames and frame.shape != frames[0].shape:
            raise InputError(f"{name}: frame {f.name!r} is {frame.shape[0]}x{frame.shape[1]} but "
                             f"{files[0].name!r} is {frames[0].shape[0]}x{frames[0].shape[1]}: use one size")
        frames.append(frame)
    return np.stack(frames)  # [F, H, W]


def _read_mask_array(path: pathlib.Path, name: str) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises OSError/ValueError/zipfile errors for damaged files
        raise InputError(f"{name} cannot be read as a numpy file ({err}): re-save it with np.save/np.savez") from err
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        if "mask" not in keys and len(keys) != 1:
            raise InputError(f"{name} holds arrays {keys} and none is named 'mask': save the mask track "
                             "as np.savez(path, mask=mask)")
        try:
            return loaded["mask" if "mask" in keys else keys[0]]
        except Exception as err:  # a damaged member inside the zip
            raise InputError(f"{name} cannot be read ({err}): re-save it with np.savez") from err


def read_mask(path: str | pathlib.Path, num_frames: int | None = None,
              size: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a mask track as uint8 `[F, H, W]` in {0, 1} (formats in the module docstring).

    `num_frames` / `size` (H, W): the video's frame count and size; a mismatch is an error, a static mask
    (single image or 2-D array) is repeated `num_frames` times, and a JSON box track is drawn at `size`.
    """
    path = pathlib.Path(path)
    name = f"mask {str(path)!r}"
    if not path.exists():
        raise InputError(f"{name} does not exist: check the path")
    suffix = path.suffix.lower()
    if path.is_dir():
        mask = _binarize(_read_mask_folder(path, name), name)
    elif suffix in VIDEO_SUFFIXES:
        frames, _, _ = read_video(path)
        mask = (frames.mean(axis=-1) >= 128).astype(np.uint8)  # [F, H, W]; lossy codec: threshold
    elif suffix == ".json":
        mask = tracks.read_box_track(path, size=size)
    elif suffix in IMAGE_SUFFIXES or suffix in (".npz", ".npy"):
        check_file(path, name)
        raw = _read_mask_image(path, name) if suffix in IMAGE_SUFFIXES else _read_mask_array(path, name)
        if raw.ndim == 4 and raw.shape[-1] == 1:
            raw = raw[..., 0]
        mask = _binarize(raw, name)
        if mask.ndim == 2:  # a static mask for every frame
            mask = np.repeat(mask[None], num_frames or 1, axis=0)  # [F, H, W]
    else:
        raise InputError(f"{name} has unsupported format {path.suffix!r}: use a video, an image folder, "
                         ".png, .npz, .npy or a .json box track")
    return check_mask(mask, name, num_frames=num_frames, size=size)


def write_mask(path: str | pathlib.Path, mask: np.ndarray, fps: float = 24.0) -> None:
    """Writes a {0, 1} mask track `[F, H, W]`: `.npz` (key ``mask``), `.mp4` (0/255 grey) or, for a path
    without suffix, a folder of PNGs `00000.png, ...`; atomically."""
    path = pathlib.Path(path)
    mask = check_mask(mask, f"mask for {str(path)!r}")
    if path.suffix.lower() == ".npz":
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, mask=mask)
    elif path.suffix.lower() in WRITE_VIDEO_SUFFIXES:
        write_video(path, np.repeat(mask[..., None] * 255, 3, axis=-1), fps)
    elif path.suffix == "":
        with atomic_write(path) as tmp:
            tmp.mkdir()
            for i, frame in enumerate(mask):
                if not cv2.imwrite(str(tmp / f"{i:05d}.png"), frame * 255):
                    raise InputError(f"mask frame {i} for {str(path)!r} could not be written")
    else:
        raise InputError(f"output mask {str(path)!r}: use .npz, .mp4 or a path without suffix (PNG folder)")
