"""The C core under AddressSanitizer + UndefinedBehaviorSanitizer, and under
valgrind (scripts/sanitize.sh, scripts/valgrind.sh; docs/design/verification.md).
Opt-in: pytest -m stress."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.stress


def _have_asan():
    if shutil.which("gcc") is None:
        return False
    r = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True)
    return r.returncode == 0 and Path(r.stdout.strip()).exists()


needs_asan = pytest.mark.skipif(not _have_asan(), reason="gcc with libasan is needed")


def _sanitize(tmp_path, *args, env=None):
    import os
    e = dict(os.environ, SANITIZE_DIR=str(tmp_path / "san"), **(env or {}))
    return subprocess.run([str(ROOT / "scripts" / "sanitize.sh"), *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=900)


def _tests_clean(r, passed):
    """A sanitized pytest run: ``passed`` (a regex) tests passed, none
    failed, and no sanitizer report."""
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(rf"\b{passed} passed", out) and not re.search(r"\b\d+ failed", out), out
    assert "sanitize: clean" in out, out
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out


@needs_asan
def test_sanitizer_catches_an_overrun(tmp_path):
    # the harness itself: a deliberate heap overrun must be reported
    r = _sanitize(tmp_path, env={"SANITIZE_SELFTEST": "1"})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "REPORTS FOUND" in out and "heap-buffer-overflow" in out, out


@needs_asan
def test_stress_under_asan_ubsan_is_clean(tmp_path):
    r = _sanitize(tmp_path, "20")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "sanitize_stress:" in out and "ok" in out, out
    assert "sanitize: clean" in out, out
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out


@needs_asan
def test_fuzzed_headers_under_asan_ubsan_are_clean(tmp_path):
    """test_fuzz_security's mutated-header and random-operation tests on
    the instrumented core: "never an out-of-bounds access" is checked by
    AddressSanitizer, not only by the absence of a crash."""
    fuzz = ROOT / "tests" / "test_fuzz_security.py"
    r = _sanitize(tmp_path, "1", env={
        "PYTEST_ARGS": f"{fuzz}::test_mutated_headers_are_refused_or_harmless "
                       f"{fuzz}::TestQueueModel"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"\b\d+ passed", out), out
    assert "sanitize: clean" in out, out


@needs_asan
def test_resp_wire_under_asan_ubsan_is_clean(tmp_path):
    """test_resp_wire (bind_resp.c: RESP2 packed, sent, and replies parsed
    from split, large, malformed and truncated input) on the instrumented
    core: the parser's reads stay inside what was received."""
    wire = ROOT / "tests" / "test_resp_wire.py"
    r = _sanitize(tmp_path, "1", env={"PYTEST_ARGS": str(wire)})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"\b\d+ passed", out) and not re.search(r"\b\d+ failed", out), out
    assert "sanitize: clean" in out, out
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out


@needs_asan
def test_spill_pool_under_asan_ubsan_is_clean(tmp_path):
    """test_spill's pool tests (bind_spillpool.c, a pooled file's trailer
    and hand-back in bind_mapping.c), its warm-mapping tests
    (bind_warmmap.c) and its other in-process tests on the instrumented
    core."""
    spill = ROOT / "tests" / "test_spill.py"
    names = ["test_an_item_larger_than_the_ring_goes_through_a_default_queue",
             "test_spilled_kinds_come_back_as_they_went",
             "test_numpy_array_comes_out_backed_by_the_mapping",
             "test_a_pooled_file_is_reused_once_its_receiver_lets_go_and_never_before",
             "test_a_producer_pools_at_most_so_many_files_per_queue_then_fresh_ones",
             "test_an_item_shared_with_a_fork_child_is_never_reused",
             "test_a_receiver_killed_holding_a_pooled_item_gives_it_back",
             "test_a_producer_that_leaves_leaves_no_file_whoever_holds_its_items",
             # the receiver's warm mappings (bind_warmmap.c; not the test
             # that counts page faults: ASan's shadow memory faults too)
             "test_a_kept_mapping_is_not_used_for_another_file_under_the_same_name",
             "test_items_held_at_once_keep_at_most_the_slots",
             "test_kept_mappings_carry_another_process_s_items_and_go_with_its_files[fork]",
             "test_a_fork_child_starts_with_no_kept_mapping_and_the_parent_keeps_its_own"]
    _tests_clean(_sanitize(tmp_path, "1", env={
        "PYTEST_ARGS": " ".join(f"{spill}::{n}" for n in names)}), r"\d+")


@needs_asan
def test_loans_under_asan_ubsan_are_clean(tmp_path):
    """test_loan (bind_loan.c: a loan's buffer, its slot in the pool, the
    item written around it in place) on the instrumented core, fork cases
    included (spawn's children would need the sanitizer preloaded)."""
    loan = ROOT / "tests" / "test_loan.py"
    names = ["test_an_array_made_on_a_loan_arrives_without_a_copy",
             "test_a_loan_inside_a_tuple_or_dict_is_sent_in_place_and_small_loans_too",
             "test_what_does_not_qualify_is_copied_and_still_arrives",
             "test_a_failed_put_leaves_the_loan_to_the_user_and_a_retry_is_in_place",
             "test_a_dropped_loan_goes_back_to_the_pool_and_a_sent_one_is_not_rewritten",
             "test_a_never_sent_new_file_leaves_nothing",
             "test_a_loan_outlives_a_detach_and_leaves_nothing_behind",
             "test_a_fork_child_s_copy_of_a_loan_is_inert",
             "test_loans_across_processes_exactly_once_in_order[fork]",
             "test_a_producer_killed_holding_loans_leaks_nothing",
             "test_a_full_pool_lends_ordinary_memory_which_put_copies",
             "test_bad_arguments_are_clear_errors"]
    _tests_clean(_sanitize(tmp_path, "1", env={
        "PYTEST_ARGS": " ".join(f"{loan}::{n}" for n in names)}), "12")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_valgrind_short_run_is_clean():
    r = subprocess.run([str(ROOT / "scripts" / "valgrind.sh"), "3"], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "valgrind: clean" in out and "fork cases ok" in out, out


@needs_asan
def test_packed_items_under_asan_ubsan_are_clean(tmp_path):
    """test_packed (bind_pack.c: every kind of value packed and rebuilt,
    damaged and random packed records read) on the instrumented core: the
    reader's reads stay inside the record, every unaligned read goes
    through memcpy."""
    packed = ROOT / "tests" / "test_packed.py"
    names = ["test_plain_values_are_packed_and_come_back_the_same",
             "test_anything_else_is_pickled_as_before", "test_sharing_inside_an_item_is_kept",
             "test_depth_limit", "test_large_items_are_pickled_and_big_ones_spill",
             "test_put_many_get_many_and_the_overflow", "test_damaged_packed_records_raise",
             "test_random_packed_bytes_never_crash",
             "test_any_value_comes_back_as_pickle_gives_it",
             "test_records_with_many_and_repeated_keys"]
    _tests_clean(_sanitize(tmp_path, "1", env={
        "PYTEST_ARGS": " ".join(f"{packed}::{n}" for n in names)}), r"\d+")


@needs_asan
def test_numpy_streams_under_asan_ubsan_are_clean(tmp_path):
    """test_numpy_stream (bind_codec.c: the kept pickle stream of the last
    numpy array, its references, the view sent in its place) on the
    instrumented core; the spawn case is left out (its child would need
    the sanitizer preloaded)."""
    nd = ROOT / "tests" / "test_numpy_stream.py"
    names = ["test_numpy_arrays_of_every_kind_come_back_as_pickle_brings_them[ring-kw0]",
             "test_numpy_arrays_of_every_kind_come_back_as_pickle_brings_them[spill-kw1]",
             "test_arrays_of_one_kind_reuse_the_stream_and_others_are_pickled",
             "test_a_structured_dtype_renamed_in_place_is_pickled_again",
             "test_a_reducer_registered_in_copyreg_is_used_for_the_next_array",
             "test_a_subclass_of_ndarray_is_pickled_as_itself",
             "test_a_child_sends_arrays_with_its_own_or_an_inherited_stream[fork]"]
    _tests_clean(_sanitize(tmp_path, "1", env={
        "PYTEST_ARGS": " ".join(f"{nd}::{n}" for n in names)}), "7")
