"""omega-ml's own tests of task logging (``om.runtime.mode(logging=...)``) and ``ping``, ported.

Source: omegaml/omegaml, ``omegaml/tests/core/test_runtime.py`` at commit 44e8553a015720f886b9a51f2ffad29f91ac03d4
(omega-ml 0.18.0), its logging part: test_ping, test_task_logging, test_logging_mode. Test names, bodies and
assertions are upstream's; only the setup is adapted:

- ``from omegaml import Omega`` / ``Omega()`` -> ``import omegaml_otel as om``;
- tasks that upstream's test settings run eagerly in-process run on a real ``omtel worker`` here (the ``worker``
  fixture); ``mode(local=True)`` still runs them in this process, as upstream;
- tearDown puts the runtime's mode back (omega-ml's tests got a fresh ``Omega()`` each).

Left out: test_task_logging_bucket (omega-ml's Mongo buckets, ``Omega()['test']``); the rest of test_runtime.py
tests models, scripts, jobs and routing, not logging (docs/experiments.md, "omega-ml's tests").
"""
import unittest

import pytest

import omegaml_otel


class RuntimeTests(unittest.TestCase):

    def setUp(self):
        self.om = omegaml_otel

    def tearDown(self):
        self.om.runtime.mode(local=False, logging=False)
        self.om.logger.setLevel('INFO')

    @pytest.mark.slow
    @pytest.mark.usefixtures("worker")
    def test_ping(self):
        om = self.om
        result = om.runtime.ping(fox='bar')
        self.assertIn('message', result)
        self.assertIn('worker', result)
        self.assertEqual(result['kwargs'], dict(fox='bar'))

    @pytest.mark.slow
    @pytest.mark.usefixtures("worker")
    def test_task_logging(self):
        """ test task python output can be logged per-request """
        om = self.om
        om.logger.reset()
        # no python logging, only om.logger
        om.runtime.ping(fox='bar', logging=False)
        self.assertEqual(len(om.logger.dataset.get(level='INFO')), 0)
        # python log capture, we get om.logger, omegaml + stdout log
        om.logger.reset()
        om.runtime.mode(logging=True).ping(fox='bar')
        self.assertEqual(len(om.logger.dataset.get(level='INFO')), 4)
        # specific python logger, we get om.logger + celery
        om.logger.reset()
        om.runtime.mode(logging='celery').ping(fox='bar')
        self.assertEqual(len(om.logger.dataset.get(level='INFO')), 3)
        # request a different level, we get celery + stdout
        om.logger.reset()
        om.runtime.mode(logging=('celery', 'DEBUG')).ping(fox='bar')
        self.assertEqual(len(om.logger.dataset.get()), 4)

    def test_logging_mode(self):
        """ test task python output can be logged for all requests """
        om = self.om
        om.logger.reset()
        # -- request logging
        om.runtime.mode(local=True, logging=True)
        om.runtime.ping(fox='bar')
        self.assertEqual(len(om.logger.dataset.get(level='INFO')), 4)
        # -- switch off logging
        om.logger.reset()
        om.runtime.mode(local=True, logging=False)
        om.runtime.ping(fox='bar')
        self.assertEqual(len(om.logger.dataset.get(level='INFO')), 0)
        # -- request specific logger
        om.logger.reset()
        om.runtime.mode(local=True, logging=('celery', 'DEBUG'))
        om.runtime.ping(fox='bar')
        self.assertEqual(len(om.logger.dataset.get(level='DEBUG')), 3)
        # -- request logging exceptions
        om.logger.reset()
        # case 1: error logging, no traceback
        om.runtime.mode(local=True, logging=('celery', 'INFO'))
        with self.assertRaises(RuntimeError):
            om.runtime.ping(fox='bar', exception=True)
        messages = om.logger.dataset.get(level='ERROR')
        self.assertEqual(len(messages), 1)
        self.assertNotIn('Traceback', messages.iloc[-1].msg)
        # case 2: debug logging, traceback is included
        om.logger.reset()
        om.runtime.mode(local=True, logging=('celery', 'DEBUG'))
        with self.assertRaises(RuntimeError):
            om.runtime.ping(fox='bar', exception=True)
        messages = om.logger.dataset.get(level='ERROR')
        self.assertEqual(len(messages), 1)
        self.assertIn('Traceback', messages.iloc[-1].msg)
