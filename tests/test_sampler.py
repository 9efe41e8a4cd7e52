"""The step-deterministic sampler: resumable, rank-sharded, epoch-complete."""
from data.sampler import StepBatchSampler


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_resume_replays_the_same_batches():
    full = take(StepBatchSampler(50, 8, seed=3, name="a"), 20)
    resumed = take(StepBatchSampler(50, 8, seed=3, name="a", start_step=12), 8)
    assert resumed == full[12:]


def test_each_epoch_is_a_permutation_and_epochs_differ():
    s = StepBatchSampler(40, 8, seed=0, name="a", flip=False)
    flat = [i for b in take(s, 10) for i, _ in b]
    assert sorted(flat[:40]) == list(range(40)) and sorted(flat[40:]) == list(range(40))
    assert flat[:40] != flat[40:]


def test_two_ranks_together_see_what_one_process_sees_with_double_batch():
    one = take(StepBatchSampler(100, 16, seed=1, name="b"), 5)
    r0 = take(StepBatchSampler(100, 8, seed=1, name="b", rank=0, world=2), 5)
    r1 = take(StepBatchSampler(100, 8, seed=1, name="b", rank=1, world=2), 5)
    assert [x + y for x, y in zip(r0, r1)] == one


def test_streams_and_seeds_differ_and_flips_are_balanced():
    a = take(StepBatchSampler(1000, 50, seed=0, name="a"), 4)
    b = take(StepBatchSampler(1000, 50, seed=0, name="b"), 4)
    c = take(StepBatchSampler(1000, 50, seed=1, name="a"), 4)
    assert a != b and a != c
    flips = [f for batch in a for _, f in batch]
    assert 60 < sum(flips) < 140
    assert not any(f for batch in take(StepBatchSampler(10, 5, 0, "a", flip=False), 3) for _, f in batch)


def test_worker_streams_send_uint8_and_match_the_in_process_stream(tmp_path):
    import torch

    from core.runtime import to_device
    from data.sampler import make_stream
    from data.synthetic import SyntheticFaces

    ds = SyntheticFaces(size=32, length=12, seed=0, cache_dir=tmp_path)
    plain = make_stream(ds, 4, 0, "a", 0, 1, start_step=2, flip=True, workers=0)
    workers = make_stream(ds, 4, 0, "a", 0, 1, start_step=2, flip=True, workers=1)
    for _ in range(3):
        p, w = next(plain), next(workers)
        assert p["image"].dtype == torch.float32 and w["image"].dtype == torch.uint8
        assert torch.equal(to_device(w, torch.device("cpu"))["image"], p["image"])
        assert torch.equal(w["index"], p["index"])
