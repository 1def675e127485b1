"""dask_client: a LocalCluster, or a connection to a running scheduler."""

from __future__ import annotations

import pytest

from cellseg_bridge.distributed import dask_client
from cellseg_bridge.errors import InputError


def test_local_cluster_and_connection_to_its_scheduler():
    with dask_client(workers=2, processes=False) as local:
        assert len(local.scheduler_info()["workers"]) == 2
        with dask_client(scheduler=local.scheduler.address) as remote:
            assert remote.submit(sum, [1, 2, 3]).result() == 6
            assert len(remote.scheduler_info()["workers"]) == 2


def test_refusals():
    with pytest.raises(InputError, match="either"):
        with dask_client(workers=1, scheduler="tcp://127.0.0.1:1"):
            pass
    with pytest.raises(InputError, match="either"):
        with dask_client():
            pass
    with pytest.raises(InputError, match=">= 1"):
        with dask_client(workers=0):
            pass
    with pytest.raises(InputError, match="cannot reach"):
        with dask_client(scheduler="tcp://127.0.0.1:9", connect_timeout="1s"):
            pass
