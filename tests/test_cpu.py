"""The CPU a speed record names: model and widest vector extension."""

from defectkit.utils.cpu import cpu_description, widest_simd

AVX512 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512bw\n"
AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n"


def test_cpu_description_names_the_widest_vector_extension():
    assert cpu_description(AVX512) == "Intel(R) Xeon(R) Platinum (avx512f)"
    assert cpu_description(AVX2) == "AMD EPYC (avx2)"
    assert cpu_description(ARM).endswith("(asimd)")


def test_widest_simd_without_known_flags_is_empty():
    assert widest_simd(["fpu", "vme"]) == ""
    assert widest_simd(["avx", "avx2"]) == "avx2"


def test_cpu_description_of_this_machine_is_not_empty():
    assert cpu_description().strip()
