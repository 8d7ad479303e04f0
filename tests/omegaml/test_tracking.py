"""omega-ml's own experiment-tracking tests, ported.

Source: omegaml/omegaml, ``omegaml/tests/core/test_tracking.py`` at commit 44e8553a015720f886b9a51f2ffad29f91ac03d4
(omega-ml 0.18.0). Test names, bodies and assertions are upstream's; only the setup is adapted:

- ``from omegaml import Omega`` / ``Omega()`` -> ``import omegaml_otel as om``; the tracker classes and
  ``dtrelative`` come from this package;
- ``OmegaTestMixin.clean()`` (drop everything in Mongo) -> ``clear(force=True)`` of the experiments these tests use,
  before and after each test (omega-ml's ``clear`` drops the experiment's dataset; runs are numbered from 1 again);
- ``om.models.get('experiments/<name>', data_store=om.datasets)`` (a fresh tracker, loaded with no current run) ->
  ``om.runtime.experiment('<name>').experiment``;
- ``om.runtime`` tasks run on a real ``omtel worker`` (upstream's test settings run them eagerly in-process).

Left out, because they need omega-ml's Mongo stores, model tracking, drift monitoring or pymongo (listed with
reasons in docs/experiments.md, "omega-ml's tests"): test_initialize, test_simple_tracking,
test_tracking_from_metadata, test_tracking_predictions_explicit_metadata,
test_tracking_predictions_implicit_tracker, test_tracking_runtime_taskid, test_experiments_not_versioned,
test_notrack, test_experiment_existing_model, test_drop_experiment, test_runtime_experiments_links,
test_model_autotrack, test_lazy_data.
"""
import datetime
import platform
import unittest
from time import sleep

import pandas as pd
import pytest

import omegaml_otel
from omegaml_otel import OmegaProfilingTracker, OmegaSimpleTracker
from omegaml_otel._internal.compat.experiment import Experiment
from omegaml_otel._internal.compat.timeparse import dtrelative

#: the experiments these tests use; cleared around each test as omega-ml's clean() dropped them
EXPERIMENTS = ("test", "myexp", "proftest")


def clean() -> None:
    """omega-ml's ``OmegaTestMixin.clean()`` for experiments: each one's data cleared, without declaring a provider
    for an experiment that does not exist yet (``declared=True``: the provider given is taken as it is)."""
    for name in EXPERIMENTS:
        Experiment(name, "simple", declared=True).clear(force=True)


class TrackingTestCases(unittest.TestCase):
    def setUp(self):
        self.om = omegaml_otel
        clean()

    def tearDown(self):
        clean()

    def test_clear(self):
        om = self.om
        exp = om.runtime.experiment('test')
        with exp:
            exp.log_metric('accuracy', .98)
        self.assertEqual(len(exp.data()), 3)
        exp.clear(force=True)
        self.assertIsNone(exp.data())

    def test_ensure_active(self):
        # explicit start
        om = self.om
        exp = om.runtime.experiment('test')
        with self.assertRaises(ValueError):
            exp.log_param('foo', 'bar')
        run = exp.start()
        exp.log_param('foo', 'bar')
        exp.flush()
        data = exp.data(run=run)
        self.assertIsNotNone(run)
        self.assertEqual(len(data), 2)
        # reuse latest run
        exp = om.runtime.experiment('test')
        with self.assertRaises(ValueError):
            exp.log_param('foo', 'bar')
        exp.use()
        exp.log_param('foo', 'bax')
        exp.stop()
        data = exp.data(run=run)
        self.assertIsNotNone(run)
        self.assertEqual(len(data), 4)
        # implied run should be NOT set in with block if use() was called previously
        # rationale: with exp should always start a new run
        with exp as xexp:
            xexp.log_param('foo', 'bar')
        data = xexp.data()
        self.assertEqual(len(data), 3)
        self.assertEqual(set(data['event']), {'start', 'stop', 'param'})
        self.assertEqual(data['run'].iloc[-1], run + 1)

    def test_empty_experiment_data(self):
        om = self.om
        with om.runtime.experiment('myexp') as exp:
            pass
        exp = om.runtime.experiment('myexp').experiment
        # we have at least a 'system' event
        self.assertEqual(len(exp.data(event='metric')), 0)
        self.assertEqual(len(exp.data()), 2)  # start, stop events

    def test_experiment_explicit_logging(self):
        om = self.om
        with om.runtime.experiment('myexp') as exp:
            exp.log_metric('accuracy', .98)
        exp = om.runtime.experiment('myexp').experiment
        self.assertEqual(len(exp.data(event='metric')), 1)

    def test_experiment_artifact(self):
        om = self.om
        with om.runtime.experiment('myexp') as exp:
            exp.log_artifact(dict(test='data'), 'foo')
        # by name
        data = exp.restore_artifacts('foo')
        self.assertIsInstance(data[0], dict)
        # by value
        data = exp.data(key='foo')
        data = exp.restore_artifacts(value=data.iloc[0].value)
        self.assertIsInstance(data[0], dict)

    def test_log_system(self):
        om = self.om
        with om.runtime.experiment('test') as exp:
            exp.log_system()
        data = exp.data(key='system')
        system = data.iloc[0]['value']
        self.assertEqual(system['platform'], platform.uname()._asdict())
        self.assertEqual(system['platform']['node'], platform.node())

    def test_profiling(self):
        om = self.om
        with om.runtime.experiment('proftest', provider='profiling') as exp:
            exp.profiler.interval = 0.1
            sleep(1.5)
        data = exp.data(event=['start', 'stop'])
        self.assertGreaterEqual(len(data), 2)
        data = exp.data(event='profile')
        self.assertGreaterEqual(len(data), 9)
        xexp = om.runtime.experiment('proftest')
        self.assertIsInstance(xexp.experiment, OmegaProfilingTracker)

    @pytest.mark.slow
    @pytest.mark.usefixtures("worker")
    def test_track_then_notracking(self):
        # test experiments are stopped afterwards
        om = self.om
        # start an experiment
        with om.runtime.experiment('myexp') as exp:
            pass
        exp = om.runtime.experiment('myexp').experiment
        # check that it is removed afterwards
        om.runtime.ping()
        self.assertEqual(len(exp.data(event='metric')), 0)
        self.assertEqual(len(exp.data()), 2)  # includes start, stop

    def test_summary(self):
        om = self.om
        for i in range(10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('accuracy', .98)
                exp.log_metric('mse', .02)
        summary = exp.summary()
        self.assertEqual(len(summary.loc['metric']), 3)
        self.assertEqual(set(summary.loc['metric'].index), {'accuracy', 'mse', 'latency'})
        summary = exp.summary(perf_stats=True)
        self.assertEqual(len(summary.loc['metric']), 5)
        self.assertEqual(set(summary.loc['metric'].index),
                         {'accuracy', 'mse', 'latency', 'utilization', 'group_latency'})

    def test_latency(self):
        om = self.om
        for i in range(10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('accuracy', .98)
        latency = exp.stats.latency(run='all', percentiles=False)
        self.assertEqual(len(latency), 10)
        latency_perc = exp.stats.latency(run='all', percentiles=True)
        self.assertEqual(len(latency_perc), 1)
        self.assertIn('50%', latency_perc.columns)

    def test_raw_data(self):
        om = self.om
        for i in range(10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('accuracy', i)
            exp.flush()
        data = exp.data(run='all', raw=True)
        self.assertIsInstance(data, list)
        self.assertEqual(len(data), 10 * 3)  # each run has 3 events

    def test_batched_data(self):
        om = self.om
        for i in range(10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('accuracy', i)
            exp.flush()
        # raw=True yields DataFrames, raw=False yields lists of rows
        for raw, result_type in zip((True, False), (list, pd.DataFrame)):
            data = exp.data(run='all', batchsize=5, raw=raw)
            total_rows = sum(len(rows) for rows in data if isinstance(rows, result_type))
            self.assertEqual(total_rows, 10 * 3)  # each run has 3 events

    def test_data_slice(self):
        om = self.om
        for i in range(10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('accuracy', i)
            exp.flush()
        # slice on records
        data = exp.data(run='*', slice=slice(0, 5))
        self.assertEqual(len(data), 5)
        data = exp.data(run='*', slice=(3, 3 + 2))
        self.assertEqual(len(data), 2)
        # slice on runs
        data = exp.data(run=slice(0, 5))
        self.assertEqual(len(data), 5 * 3)  # every run has 3 events (start, metric, stop)

    def test_current_vs_all_data(self):
        om = self.om
        for i in range(10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('accuracy', i)
            exp.flush()
        data = exp.data()
        # only current run
        self.assertEqual(len(data), 3)
        # all runs
        data = exp.data(run='*')
        self.assertEqual(len(data), 10 * 3)  # each run has 3 events

    def test_run_monotonically_increased(self):
        om = self.om
        for i in range(1, 10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('acc', 0)
            self.assertEqual(exp._latest_run, i)
        data = exp.data(run='*')
        self.assertEqual(list(data['run'].unique()), list(range(1, 10)))
        data = exp.data(run=1)
        self.assertEqual(data['run'].unique(), [1])

    def test_since_filter(self):
        om = self.om
        dt_start = dt = datetime.datetime.utcnow()
        for i in range(0, 10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('acc', 0, dt=dt)
                dt = dt + datetime.timedelta(hours=1)
        # all data since start
        data = exp.data(event='metric', key='acc', since=dt_start)
        self.assertEqual(len(data), 10)
        # only last 5 hours
        data = exp.data(event='metric', key='acc', since=dt_start + datetime.timedelta(hours=5))
        self.assertEqual(len(data), 5)
        # only last hour
        data = exp.data(event='metric', key='acc', since=dt_start + datetime.timedelta(hours=9))
        self.assertEqual(len(data), 1)
        # all data since start - 1 hour
        data = exp.data(event='metric', key='acc', since=dt_start - datetime.timedelta(hours=1))
        self.assertEqual(len(data), 10)
        # make sure run=1 is not ignored when since is set
        data = exp.data(run=1, event='metric', key='acc')
        self.assertEqual(len(data), 1)
        data = exp.data(run=1, event='metric', key='acc', since=dt_start + datetime.timedelta(hours=5))
        self.assertEqual(len(data), 0)
        data = exp.data(run=None, event='metric', key='acc', since=dt_start + datetime.timedelta(hours=5))
        self.assertEqual(len(data), 5)

    def test_since_delta_filter(self):
        om = self.om
        dt_start = dt = datetime.datetime.utcnow()  # noqa: F841 (upstream's line)
        for i in range(0, 10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('acc', 0, dt=dt)
                dt = dt + datetime.timedelta(hours=1)
        exp.experiment._since_dtnow = dt
        # all data since start
        data = exp.data(event='metric', key='acc', since='10h')
        self.assertEqual(len(data), 10)
        # only last 5 hours
        data = exp.data(event='metric', key='acc', since='5h')
        self.assertEqual(len(data), 5)
        # only last hour
        data = exp.data(event='metric', key='acc', since='1h')
        self.assertEqual(len(data), 1)
        # all data since start - 1 hour
        data = exp.data(event='metric', key='acc', since='-11h')
        self.assertEqual(len(data), 10)
        # make sure run=1 is not ignored when since is set
        data = exp.data(run=1, event='metric', key='acc')
        self.assertEqual(len(data), 1)
        data = exp.data(run=1, event='metric', key='acc', since='11h')
        self.assertEqual(len(data), 1)
        data = exp.data(run=1, event='metric', key='acc', since='5h')
        self.assertEqual(len(data), 0)

    def test_dtrelative(self):
        from datetime import datetime, timedelta
        # Define a fixed 'now' for testing purposes
        now = datetime(2024, 10, 16, 12, 0, 0)  # Oct 16, 2024, 12:00:00
        # Test cases for each unit with positive and negative deltas
        assert dtrelative("0h", now) == now
        assert dtrelative("10s", now) == now + timedelta(seconds=10)  # Seconds
        assert dtrelative("-10s", now) == now - timedelta(seconds=10)
        assert dtrelative("5m", now) == now + timedelta(minutes=5)  # Minutes
        assert dtrelative("-5m", now) == now - timedelta(minutes=5)
        assert dtrelative("2h", now) == now + timedelta(hours=2)  # Hours
        assert dtrelative("-2h", now) == now - timedelta(hours=2)
        assert dtrelative("1d", now) == now + timedelta(days=1)  # Days
        assert dtrelative("-1d", now) == now - timedelta(days=1)
        assert dtrelative("1w", now) == now + timedelta(weeks=1)  # Weeks
        assert dtrelative("-1w", now) == now - timedelta(weeks=1)
        assert dtrelative("1n", now) == now + timedelta(days=30)  # Months (~30 days)
        assert dtrelative("-1n", now) == now - timedelta(days=30)
        assert dtrelative("1q", now) == now + timedelta(days=90)  # Quarters (~90 days)
        assert dtrelative("-1q", now) == now - timedelta(days=90)
        assert dtrelative("1y", now) == now + timedelta(days=365)  # Years (~365 days)
        assert dtrelative("-1y", now) == now - timedelta(days=365)
        assert dtrelative("0y", now) == datetime(now.year, 12, 31)  # Year end
        assert dtrelative("-0y", now) == datetime(now.year, 1, 1)  # Year start
        # Test case for timedelta input
        assert dtrelative(timedelta(days=2), now) == now + timedelta(days=2)
        with self.assertRaises(ValueError):
            dtrelative("invalid", now)
        with self.assertRaises(ValueError):
            dtrelative("10x", now)

    def test_daterange_filter(self):
        om = self.om
        dt_start = dt = datetime.datetime.utcnow()
        for i in range(0, 10):
            with om.runtime.experiment('myexp') as exp:
                exp.log_metric('acc', 0, dt=dt)
                dt = dt + datetime.timedelta(hours=1)
        # try datetime range since start
        for i in range(0, 10):
            data = exp.data(event='metric', key='acc', since=dt_start, end=dt_start + datetime.timedelta(hours=i))
            self.assertEqual(len(data), i + 1)
        # try datetime for arbitrary ranges
        for delta_start, delta_end in [(1, 4), (2, 6)]:
            data = exp.data(event='metric', key='acc',
                            since=dt_start + datetime.timedelta(hours=delta_start),
                            end=dt_start + datetime.timedelta(hours=delta_end))
            self.assertEqual(len(data), delta_end - delta_start + 1, f'{delta_start} {delta_end}')

    def test_restore_xy_data(self):
        om = self.om
        exp: OmegaSimpleTracker
        with om.runtime.experiment('myexp') as exp:
            df = pd.DataFrame({'x': range(0, 10)})
            exp.log_data('Y', df['x'])
        with om.runtime.experiment('myexp') as exp:
            ds = pd.Series(range(0, 10)).values
            exp.log_data('Y', ds)
        dfx = exp.restore_data('Y', run='*')
        self.assertEqual(len(dfx), 20)
