"""The restricted unpickler admits a reviewed list of globals, and no payload runs through any loader.

Every file the engine and the converter read goes through one of: files.read_pdparams, safe_load.read_weights,
safe_load.read_pickle (.pdopt, legacy state.pkl), core.read_raw (tools/convert.py, any extension), files.read_torch
and files.read_npz. Each payload below would write a marker file (or reach the OS) if its global were resolved.
"""

import builtins
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from segmenter.convert import core, files
from segmenter.engine import safe_load

# Reviewed: each builds a numpy array/scalar/dtype or an OrderedDict from data and calls nothing else. Adding to
# segmenter.convert.files._ALLOWED_GLOBALS means reviewing the addition here too.
REVIEWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


def test_allowed_globals_are_the_reviewed_list():
    assert files._ALLOWED_GLOBALS == REVIEWED, (
        f"added: {sorted(files._ALLOWED_GLOBALS - REVIEWED)}, removed: {sorted(REVIEWED - files._ALLOWED_GLOBALS)}"
    )


def test_no_allowed_global_is_a_code_runner():
    """Independently of the list: what the allowed names resolve to is an array/container type or numpy's own
    reconstructors, never a builtin, nor anything from a module that reaches the OS or imports."""
    for module, name in files._ALLOWED_GLOBALS:
        try:
            obj = pickle.Unpickler(io.BytesIO(b"")).find_class(module, name)
        except (ImportError, AttributeError):
            continue  # numpy._core on numpy 1.x: nothing to resolve
        assert module.split(".")[0] in ("numpy", "collections"), f"{module}.{name}"
        assert not hasattr(builtins, name) or getattr(builtins, name) is not obj, f"{module}.{name} is a builtin"
        assert (
            obj in (np.ndarray, np.dtype)
            or isinstance(obj, type)
            and issubclass(obj, dict)
            or name in ("_reconstruct", "scalar")
        ), f"{module}.{name} -> {obj!r}"


class Reduce:
    """Pickles as a call of func(*args) (module.name looked up by the unpickler)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def global_call(module: str, name: str, *args) -> bytes:
    """A protocol-0 pickle that calls module.name(*args) (strings), for globals pickle cannot reference itself."""
    body = "".join(f"V{a}\n" for a in args)
    return f"c{module}\n{name}\n({body}tR.".encode()


def payloads(marker: str):
    """(id, pickle bytes) that run code, import, or reach the OS if their global loads; in a state dict too."""
    touch = f"open({marker!r}, 'w').close()"
    calls = {
        "eval": Reduce(eval, touch),
        "exec": Reduce(exec, touch),
        "compile": Reduce(compile, touch, "x", "exec"),
        "getattr": Reduce(getattr, "text", "upper"),
        "__import__": Reduce(__import__, "os"),
        "open": Reduce(open, marker, "w"),
        "os.system": Reduce(os.system, f"touch {marker}"),
        "os.popen": Reduce(os.popen, f"touch {marker}"),
        "os.remove": Reduce(os.remove, marker),
        "subprocess.Popen": Reduce(__import__("subprocess").Popen, ["touch", marker]),
        "subprocess.check_output": Reduce(__import__("subprocess").check_output, ["touch", marker]),
        "importlib.import_module": Reduce(__import__("importlib").import_module, "os"),
        "pickle.loads": Reduce(pickle.loads, b"."),
        "numpy.testing runstring": Reduce(np.testing._private.utils.runstring, touch, {}),
        "numpy.load": Reduce(np.load, marker),
        "numpy.fromfile": Reduce(np.fromfile, marker),
    }
    for key, obj in calls.items():
        for protocol in (0, 2, 5):
            yield f"{key}-p{protocol}", pickle.dumps(obj, protocol=protocol)
        yield f"{key}-in-a-state-dict", pickle.dumps({"w": np.zeros(2, np.float32), "b": obj}, protocol=2)
    for module, name, args in [
        ("builtins", "eval", (touch,)),
        ("builtins", "exec", (touch,)),
        ("builtins", "globals", ()),
        ("builtins", "breakpoint", ()),
        ("posix", "system", (f"touch {marker}",)),
        ("os", "system", (f"touch {marker}",)),
        ("nt", "system", (f"touch {marker}",)),
        ("runpy", "run_path", (marker,)),
        ("shutil", "rmtree", (marker,)),
        ("sys", "exit", ("1",)),
        ("collections", "namedtuple", ("T", "a")),
        ("numpy", "save", (marker,)),
        ("numpy.core.multiarray", "_reconstruct_eval", ()),
        ("operator", "attrgetter", ("x",)),
        ("functools", "partial", ()),
        ("types", "FunctionType", ()),
        ("ctypes", "CDLL", ("libc.so.6",)),
    ]:
        yield f"{module}.{name}-global", global_call(module, name, *args)


def torch_file(path: str, raw: bytes) -> None:
    """A PyTorch zip checkpoint whose data.pkl is raw."""
    import torch

    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, raw if n.endswith("/data.pkl") else data)


def npz_file(path: str, raw: bytes) -> None:
    """An .npz archive whose one member is an object array (a pickle) holding the payload."""
    arr = np.empty(1, dtype=object)
    arr[0] = "x"
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    head = buf.getvalue()[: -len(pickle.dumps(arr, protocol=3))]  # the .npy header, then the pickle
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", head + raw)


LOADERS = {  # name: (extension, how to write the payload there, how the engine or converter reads it)
    "files.read_pdparams": (".pdparams", None, files.read_pdparams),
    "safe_load.read_weights": (".pdparams", None, safe_load.read_weights),
    "safe_load.read_pickle(.pdopt)": (".pdopt", None, safe_load.read_pickle),
    "safe_load.read_pickle(state.pkl)": (".pkl", None, safe_load.read_pickle),
    "SafeUnpickler": (".pdparams", None, lambda p: files.SafeUnpickler(open(p, "rb"), p).load()),
    "core.read_raw(.pdparams)": (".pdparams", None, core.read_raw),
    "core.read_raw(.pth)": (".pth", torch_file, core.read_raw),
    "files.read_torch": (".pt", torch_file, files.read_torch),
    "core.read_raw(.npz)": (".npz", npz_file, core.read_raw),
}


# torch's weights_only unpickler notes the payload's pickle protocol (5) before refusing it: harmless here
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("loader", list(LOADERS))
def test_no_payload_runs_through_any_loader(loader, tmp_path):
    ext, write, read = LOADERS[loader]
    marker = str(tmp_path / "ran")
    ran, admitted = [], []
    for key, raw in payloads(marker):
        path = str(tmp_path / f"w{ext}")
        if write:
            write(path, raw)
        else:
            with open(path, "wb") as f:
                f.write(raw)
        try:
            read(path)
            admitted.append(key)
        except files.UnsafeFileError:
            pass
        except Exception as e:  # noqa: BLE001  (a payload that got past the unpickler and then failed)
            admitted.append(f"{key} ({type(e).__name__})")
        if os.path.exists(marker):
            ran.append(key)
            os.remove(marker)
    assert not ran and not admitted, f"{loader}: payloads that ran: {ran}; not refused as unsafe: {admitted}"
