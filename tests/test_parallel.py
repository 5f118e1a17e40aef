"""Scale-out: many layers on executors, identical to serial."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import tnlib

KW = dict(out_dims=(4, 4, 4), in_dims=(4, 4, 4), truncation=tnlib.Truncation(max_bond=6))


def layers():
    return [np.random.default_rng(k).standard_normal((64, 64)) for k in range(6)]


def same(a, b):
    return a.bond_dims == b.bond_dims and all(np.array_equal(x, y) for x, y in zip(a.cores, b.cores))


def test_threads_and_processes_match_serial():
    serial = tnlib.decompose_many(layers(), **KW)
    with ThreadPoolExecutor(2) as pool:
        threaded = tnlib.decompose_many(layers(), executor=pool, **KW)
    # a fork server, not fork: the test process may hold JAX's (or torch's) threads, which fork would copy mid-flight
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
        forked = tnlib.decompose_many(layers(), executor=pool, **KW)
    for s, t, f in zip(serial, threaded, forked):
        assert same(s, t) and same(s, f)
        assert s.report == f.report


def test_dask_distributed_local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        with distributed.Client(cluster) as client:
            out = tnlib.decompose_many(layers(), executor=client.get_executor(), **KW)
    for s, d in zip(tnlib.decompose_many(layers(), **KW), out):
        assert same(s, d)


def test_errors():
    with pytest.raises(TypeError, match=r"executor must have a submit\(fn, \*args\) method"):
        tnlib.decompose_many(layers(), executor=3, **KW)
    with pytest.raises(TypeError, match=r"matrices must be a sequence of matrices, got int"):
        tnlib.decompose_many(5)
    with pytest.raises(ValueError, match=r"out_dims=\(4, 4, 4\) multiply to 64 but matrix has 32 rows"):
        tnlib.decompose_many([np.ones((32, 64))], **KW)
