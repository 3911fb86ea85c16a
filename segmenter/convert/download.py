"""Weights by URL, as PaddleSeg reads them (`--model_path https://…/model.pdparams`, a backbone's
`pretrained: https://…/vit_small_patch16_384_augreg.tar.gz`): downloaded once into a cache, then read by the same
safe strict loaders as a local file.

Where: `$SEGMENTER_CACHE/weights/<host>/<path of the URL>` (default `~/.cache/segmenter`, or
`$XDG_CACHE_HOME/segmenter`), so a URL's file is found again by any later run and two URLs never share a name.
Cache cap and eviction: none automatic. Each URL is kept once (a published Segmenter is 100-400 MB; an archive
is deleted once its weights are unpacked) and nothing else is written there; delete the folder to reclaim it.

A download goes to `<file>.partial-<pid>` and becomes `<file>` only when it is complete (the byte count equals the
server's Content-Length) and, for a URL ending in `#sha256=<hex>`, its checksum matches; a failure deletes the
partial file, so a rerun never trusts half a file. A file lock (`<file>.lock`, filelock) makes a second process
that wants the same URL wait for the first and then use its file. The sha256 of every download is kept beside it
(`<file>.sha256`) and printed, so it can be pinned in the URL afterwards.

requests does the HTTP and filelock the locking (both installed with PaddleSeg's stack) rather than pooch: pooch
would add a dependency and still need the lock, a Content-Length check and progress lines for logs written here.
"""

import hashlib
import os
import re
import shutil
import sys
import tarfile
import time
import zipfile
from typing import Optional, Tuple
from urllib.parse import urlsplit

CACHE_ENV = "SEGMENTER_CACHE"
URL_SCHEMES = ("http://", "https://")
ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")  # PaddleSeg's pretrained archives hold one model.pdparams
WEIGHT_EXTS = (".pdparams", ".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".npz")
CHUNK = 1 << 20  # bytes read per step
CONNECT_TIMEOUT, READ_TIMEOUT = 15, 60  # seconds: to reach the host, and of silence mid-transfer
LOG_EVERY = 10  # percent between progress lines when stderr is not a terminal
LOG_EVERY_BYTES = 50 << 20  # the same without a Content-Length


class DownloadError(OSError):
    """A download that failed: the message is one line naming the URL and what to do."""


def is_url(path: str) -> bool:
    return isinstance(path, str) and path.lower().startswith(URL_SCHEMES)


def cache_root() -> str:
    """$SEGMENTER_CACHE, else $XDG_CACHE_HOME/segmenter, else ~/.cache/segmenter."""
    if os.environ.get(CACHE_ENV):
        return os.path.expanduser(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "segmenter")


def split_checksum(url: str) -> Tuple[str, Optional[str]]:
    """(url without its fragment, the sha256 a `#sha256=<hex>` fragment pins, or None)."""
    base, _, frag = url.partition("#")
    if not frag:
        return base, None
    m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", frag)
    if not m:
        raise DownloadError(f"{url}: the URL's '#{frag}' is not a checksum; end it with #sha256=<64 hex digits>.")
    return base, m.group(1).lower()


def cache_path(url: str) -> str:
    """Where a URL's file is kept: <cache>/weights/<host>/<path>, every part made a safe file name."""
    parts = urlsplit(url)
    host = re.sub(r"[^A-Za-z0-9._-]", "_", parts.netloc)
    segments = [re.sub(r"[^A-Za-z0-9._-]", "_", s) for s in parts.path.split("/") if s not in ("", ".", "..")]
    if parts.query:
        segments[-1:] = [segments[-1] + "_" + hashlib.sha256(parts.query.encode()).hexdigest()[:12]] if segments else []
    if not segments:
        raise DownloadError(f"{url} names no file; pass the URL of a weights file (.pdparams, .pth, ...).")
    return os.path.join(cache_root(), "weights", host, *segments)


def archive_of(path: str) -> Optional[str]:
    """The archive extension of a file name, if it is one."""
    return next((a for a in ARCHIVES if path.lower().endswith(a)), None)


def fetch_weights(url: str, log=None) -> str:
    """The local weights file of `url`: downloaded into the cache the first time (an archive unpacked to its one
    weights member), found there afterwards. Raises DownloadError (an OSError) with one line on any failure."""
    log = log or _say
    src, sha = split_checksum(url)
    target = cache_path(src)
    kind = archive_of(target)
    final = os.path.join(target[: -len(kind)], "model.pdparams") if kind else target
    for folder in {os.path.dirname(target), os.path.dirname(final)}:
        os.makedirs(folder, exist_ok=True)
    from filelock import FileLock, Timeout

    lock = FileLock(final + ".lock")
    try:
        lock.acquire(timeout=1)
    except Timeout:
        log(f"download: waiting for another process fetching {src} (lock {final}.lock)")
        lock.acquire()
    try:
        if _cached(final, target, sha):
            return final
        got = _download(src, target, sha, log)
        if kind:
            _unpack(target, kind, final, src)
            _write_checksum(final, got)  # the archive's: what a #sha256= pins
            os.remove(target)
        return final
    finally:
        lock.release()


def _cached(final: str, downloaded: str, sha: Optional[str]) -> bool:
    """A complete earlier download of this URL (and, when a checksum is pinned, of exactly that checksum)."""
    if not os.path.isfile(final):
        return False
    if sha is None:
        return True
    try:
        with open(final + ".sha256") as f:
            return f.read().split()[0] == sha
    except (OSError, IndexError):
        return False


def _write_checksum(path: str, sha: str) -> None:
    with open(path + ".sha256", "w") as f:
        f.write(f"{sha}  {os.path.basename(path)}\n")


def _download(url: str, path: str, sha: Optional[str], log) -> str:
    """Stream url to path.partial-<pid>, check the length and checksum, rename to path; returns the sha256."""
    try:
        import requests
    except ModuleNotFoundError as e:  # the PyTorch-only install: say what to add
        raise DownloadError(f"downloading {url} needs requests and filelock: pip install requests filelock") from e
    host = urlsplit(url).netloc
    tmp = f"{path}.partial-{os.getpid()}"
    digest = hashlib.sha256()
    try:
        try:
            r = requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except (requests.ConnectionError, requests.Timeout) as e:
            raise DownloadError(
                f"cannot reach {host}: download {url} yourself and pass the file ({_reason(e)})."
            ) from None
        with r:
            if r.status_code != 200:
                raise DownloadError(
                    f"{url}: the server answered {r.status_code} {r.reason}; check the URL "
                    f"(or download it yourself and pass the file)."
                )
            total = int(r.headers.get("Content-Length") or 0) or None
            log(f"download: {url} -> {path}" + (f" ({total / 1e6:.1f} MB)" if total else ""))
            done = 0
            progress = Progress(total, log)
            try:
                with open(tmp, "wb") as f:
                    for chunk in r.iter_content(CHUNK):
                        f.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        progress.update(done)
                    f.flush()
                    os.fsync(f.fileno())
            except (requests.RequestException, ConnectionError) as e:  # the server closed mid-body
                raise DownloadError(
                    f"{url}: the transfer broke off after {done} of {total or '?'} bytes ({_reason(e)}); "
                    f"nothing was kept: run again, or download it yourself and pass the file."
                ) from None
            finally:
                progress.close()
            if total is not None and done != total:
                raise DownloadError(
                    f"{url}: received {done} of the {total} bytes the server announced; nothing was kept: run "
                    f"again, or download it yourself and pass the file."
                )
        got = digest.hexdigest()
        if sha is not None and got != sha:
            raise DownloadError(
                f"{url}: sha256 {got} does not match the #sha256={sha} the URL pins; nothing was kept. Check the "
                f"URL and its checksum."
            )
        os.replace(tmp, path)
        _write_checksum(path, got)
        log(f"download: done, {done / 1e6:.1f} MB, sha256 {got} (pin it: {url}#sha256={got})")
        return got
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _reason(e: BaseException) -> str:
    """The innermost cause of a requests error, in one line."""
    while e.__context__ is not None and e.__context__ is not e:
        e = e.__context__
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def _unpack(archive: str, kind: str, final: str, url: str) -> None:
    """Write the one weights member of a .tar.gz / .zip to final (via a temporary name); nothing else is unpacked,
    and no member path is used, so no archive writes outside the cache."""
    tmp = f"{final}.partial-{os.getpid()}"
    os.makedirs(os.path.dirname(final), exist_ok=True)
    try:
        if kind == ".zip":
            with zipfile.ZipFile(archive) as z:
                names = [n for n in z.namelist() if n.lower().endswith(WEIGHT_EXTS) and not n.endswith("/")]
                member = _one_member(names, url)
                with z.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
        else:
            with tarfile.open(archive) as t:
                members = {m.name: m for m in t.getmembers() if m.isfile() and m.name.lower().endswith(WEIGHT_EXTS)}
                member = _one_member(list(members), url)
                with t.extractfile(members[member]) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
        os.replace(tmp, final)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DownloadError(f"{url}: the archive is damaged ({e}); nothing was kept: run again.") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _one_member(names: list, url: str) -> str:
    """The archive's model.pdparams (PaddleSeg's layout), else its only weights file."""
    preferred = [n for n in names if os.path.basename(n) == "model.pdparams"]
    found = preferred or names
    if len(found) != 1:
        raise DownloadError(
            f"{url}: the archive holds {len(found)} weights files {sorted(found)[:5]}, not one model.pdparams; "
            f"unpack it yourself and pass the file."
        )
    return found[0]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    """A tqdm bar on a terminal; elsewhere (a log file) a line every LOG_EVERY percent with the rate and ETA, or every
    LOG_EVERY_BYTES when the server announced no length."""

    def __init__(self, total: Optional[int], log):
        self.total, self.log, self.t0, self.seen = total, log, time.time(), 0
        self.step = total * LOG_EVERY / 100 if total else LOG_EVERY_BYTES  # bytes between lines
        self.next = self.step
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="download")

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.seen)
        elif done >= self.next:
            rate = done / max(time.time() - self.t0, 1e-6)
            if self.total:
                eta = (self.total - done) / max(rate, 1e-6)
                self.log(
                    f"download: {done * 100 // self.total}% ({done / 1e6:.1f} of {self.total / 1e6:.1f} MB), "
                    f"{rate / 1e6:.1f} MB/s, ETA {eta:.0f} s"
                )
            else:
                self.log(f"download: {done / 1e6:.1f} MB, {rate / 1e6:.1f} MB/s")
            self.next = (done // self.step + 1) * self.step
        self.seen = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
