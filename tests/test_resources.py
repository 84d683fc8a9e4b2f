"""On a cluster with a CPU-declared and a GPU-declared worker, tile tasks land on the CPU worker
and classification on the GPU worker (the README's `dask worker --resources` setup)."""

from distributed import Client, Scheduler, SpecCluster, Worker

from wsi_screen.parallel import bounded_map, declares


def _worker_name(_item):
    from distributed import get_worker

    return get_worker().name


def test_work_lands_on_the_declared_resources():
    workers = {name: {"cls": Worker, "options": {"nthreads": 1, "resources": {name.upper(): 1}, "name": name}} for name in ("cpu", "gpu")}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        assert declares(client, "CPU") and declares(client, "GPU") and not declares(client, "TPU")
        assert set(bounded_map(client, _worker_name, range(12), 4)) == {"cpu"}
        assert client.submit(_worker_name, 0, resources={"GPU": 1}, pure=False).result() == "gpu"
