"""The machine a benchmark's figures come from, printed beside them."""
import contextlib
import os


def cpu_line():
    """``CPU: <vendor> <model name>, <n> cores, flags ...``: ``lscpu``'s vendor and model,
    the cores this process sees, and which of the AVX-512 / bfloat16 / AMX flags it has."""
    info = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    isa = [flag for flag in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if flag in flags]
    return (f"CPU: {info.get('vendor_id', '?')} {info.get('model name', '?')}, {os.cpu_count()} cores, "
            f"flags {' '.join(isa) or 'none of avx512f/avx512_bf16/amx'}")
