"""scripts/benchmark_forward_rate.py's arithmetic: FLOPs from oneDNN's verbose shapes and
which primitives belong to which timed call."""
import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "benchmark_forward_rate.py"


@pytest.fixture(scope="module")
def rate():
    spec = importlib.util.spec_from_file_location("benchmark_forward_rate_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conv_flops_dense_strided_and_depthwise(rate):
    # ResNet50's stem: 32 images, 3 -> 64 channels, 7x7, stride 2 to 112x112.
    stem = "mb32_ic3oc64_ih224oh112kh7sh2dh0ph3_iw224ow112kw7sw2dw0pw3"
    assert rate.conv_flops(stem) == 2 * 32 * 112 * 112 * 7 * 7 * 3 * 64
    # A 1x1 convolution, 14x14.
    assert rate.conv_flops("mb2_ic512oc2048_ih14oh14kh1sh1dh0ph0_iw14ow14kw1sw1dw0pw0") == \
        2 * 2 * 14 * 14 * 512 * 2048
    # Depthwise (96 groups of one channel): each output channel reads one input channel.
    assert rate.conv_flops("g96mb32_ic96oc96_ih112oh56kh3sh2dh0ph0_iw112ow56kw3sw2dw0pw0") == \
        2 * 32 * 56 * 56 * 3 * 3 * 96
    # Non-square output.
    assert rate.conv_flops("mb1_ic4oc8_ih10oh5kh3sh2dh0ph1_iw20ow10kw3sw2dw0pw1") == 2 * 5 * 10 * 9 * 4 * 8
    with pytest.raises(ValueError, match="not a oneDNN convolution shape"):
        rate.conv_flops("32x196x2048:32x2048x1")


def _prim(kind, ms, shape="mb1_ic1oc1_ih1oh1kh1sh1dh0ph0_iw1ow1kw1sw1dw0pw0"):
    return f"onednn_verbose,v1,primitive,exec,cpu,{kind},brg:avx512,forward_training,src,attrs,alg,{shape},{ms}"


def test_parse_keeps_only_the_lines_inside_each_timed_call(rate):
    lines = [
        _prim("convolution", 9.0),                       # tracing: outside any call
        f"{rate.MARK},forward:a,",
        _prim("convolution", 1.5), _prim("reorder", 0.25),
        f"{rate.MARK},forward_end,0.002",
        _prim("convolution", 7.0),                       # between calls: belongs to none
        "onednn_verbose,v1,info,cpu,isa:whatever",
        f"{rate.MARK},forward:b,",
        _prim("convolution", 2.0),
        f"{rate.MARK},forward_end,0.003",
        f"{rate.MARK},forward:a,",
        f"{rate.MARK},forward_end,0.001",
    ]
    calls = rate.parse(lines)
    assert sorted(calls) == ["forward:a", "forward:b"]
    (s1, p1), (s2, p2) = calls["forward:a"]
    assert (s1, s2) == (0.002, 0.001)
    assert [(p[0], p[3]) for p in p1] == [("convolution", 1.5), ("reorder", 0.25)]
    assert p2 == []
    assert [(p[0], p[3]) for p in calls["forward:b"][0][1]] == [("convolution", 2.0)]
