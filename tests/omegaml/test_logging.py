"""omega-ml's own tests of ``om.logger``, ported.

Source: omegaml/omegaml, ``omegaml/tests/core/test_logging.py`` at commit 44e8553a015720f886b9a51f2ffad29f91ac03d4
(omega-ml 0.18.0). Test names, bodies and assertions are upstream's; only the setup is adapted:

- ``from omegaml import Omega`` / ``Omega()`` -> ``import omegaml_otel as om``; ``OmegaSimpleLogger`` and
  ``OmegaLoggingHandler`` come from this package;
- ``OmegaTestMixin.clean()`` and ``om.datasets.drop('.omega/logs')`` -> ``om.logger.reset()`` (the dataset starts
  afresh with its ``log init`` record, as omega-ml's re-created one);
- tearDown also puts back what the tests change in this process (omega-ml's ran each test in a fresh ``Omega()``):
  the logger's name and level and ``sys.excepthook``. Its check that no Mongo dataset has a None name is left out:
  there are no Mongo datasets here (docs/experiments.md, "omega-ml's tests").
"""
import logging
import sys
import unittest

import omegaml_otel
from omegaml_otel._internal.compat.logger import OmegaLoggingHandler, OmegaSimpleLogger


class OmegaLoggingTests(unittest.TestCase):
    def setUp(self):
        self.om = omegaml_otel
        self._reset_log()
        self.pylogger = logging.getLogger('root')
        self.previous_loglevel = self.pylogger.getEffectiveLevel()
        self._excepthook = sys.excepthook

    def tearDown(self):
        self.pylogger.setLevel(self.previous_loglevel)
        sys.excepthook = self._excepthook
        self.om.logger.name = 'simple'
        self.om.logger.setLevel('INFO')

    def _reset_log(self):
        self.om.logger.reset()

    def test_simple_logger(self):
        logger = self.om.logger
        self.assertIsInstance(logger, OmegaSimpleLogger)
        logger.setLevel('DEBUG')
        logger.info('info message')
        logger.error('error message')
        logger.debug('debug message')
        logger.warning('warning message')
        logger.critical('critical message')
        for level in OmegaSimpleLogger.levels:
            expected = 1 if level != 'QUIET' else 0
            df = logger.dataset.get(level=level)
            self.assertTrue(len(df) == expected, 'level {} did not have a record'.format(level))
            if expected:
                # msg contains the exact message as passed in
                self.assertEqual(df.iloc[0].msg, '{} message'.format(level).lower())
                # text contains the formatted msg
                self.assertNotEqual(df.iloc[0].text, '{} message'.format(level).lower())
                self.assertIn('{} message'.format(level).lower(), df.iloc[0].text)

    def test_simple_logger_level(self):
        logger = self.om.logger
        self.assertIsInstance(logger, OmegaSimpleLogger)
        logger.setLevel('INFO')
        logger.info('info message')
        logger.debug('error message')
        df = logger.dataset.get(level='DEBUG')
        self.assertTrue(len(df) == 0)
        df = logger.dataset.get(level='INFO')
        self.assertTrue(len(df) == 1)

    def test_simple_logger_quiet(self):
        logger = self.om.logger
        self.assertIsInstance(logger, OmegaSimpleLogger)
        logger.setLevel('INFO')
        logger.info('initialize')  # need this to initialize
        logger.setLevel('QUIET')
        logger.error('info message')
        logger.debug('error message')
        df = logger.dataset.get(level='INFO')
        self.assertTrue(len(df) == 1)
        df = logger.dataset.get(level='DEBUG')
        self.assertTrue(len(df) == 0)
        df = logger.dataset.get(level='ERROR')
        self.assertTrue(len(df) == 0)

    def test_loghandler(self):
        pylogger = self.pylogger
        omlogger = self.om.logger
        handler = OmegaLoggingHandler.setup(logger=pylogger, level='DEBUG', exit_hook=True)
        pylogger.setLevel('DEBUG')
        pylogger.info('info message')
        pylogger.error('error message')
        pylogger.warning('warning message')
        pylogger.debug('debug message')
        df = omlogger.dataset.get()
        self.assertEqual(len(df), 5)  # including init
        pylogger.handlers.remove(handler)
        # msg contains the exact message as passed in
        for level in ['INFO', 'ERROR', 'WARNING', 'DEBUG']:
            df = omlogger.dataset.get(filter=dict(level=level, logger='root'))
            expected = 1
            self.assertEqual(len(df), expected, 'expected 1 message for level {}'.format(level))
            if expected:
                self.assertEqual(df.iloc[0].msg, '{} message'.format(level).lower())
                # text contains the formatted msg
                self.assertNotEqual(df.iloc[0].text, '{} message'.format(level).lower())
                self.assertIn('{} message'.format(level).lower(), df.iloc[0].text)

    def test_named_simplelogger(self):
        """
        test we can get a named logger
        """
        # get a named logger
        logger = self.om.logger.getLogger('foo')
        self.assertIsInstance(logger, OmegaSimpleLogger)
        self.assertNotEqual(logger, self.om.logger)
        self.assertNotEqual(logger.name, self.om.logger.name)
        logger.setLevel('info')
        logger.info('foo')
        df = logger.dataset.get(level='INFO')
        self.assertTrue(len(df) == 1)
        self.assertEqual(df.iloc[0]['logger'], 'foo')
        # change logger name of the default logger
        self.om.logger.setLevel('info')
        self.om.logger.name = 'myname'
        self.om.logger.info('foo')
        df = self.om.logger.dataset.get(filter=dict(level='INFO', logger='myname'))
        self.assertTrue(len(df) == 1)
        self.assertEqual(df.iloc[-1]['logger'], 'myname')

    def test_python_logger_capture(self):
        om = self.om
        # -- get a python logger and add message
        # -- expect message is not in om logger dataset
        logger = logging.getLogger('mytestlogger')
        logger.setLevel('INFO')
        logger.info('foo')
        df = om.logger.dataset.get(level='INFO')
        self.assertTrue(len(df) == 0)
        # -- capture python logger
        # -- expect message is in om logger dataset
        with om.logger.capture(logger):
            logger.info('foo')
        df = om.logger.dataset.get(level='INFO')
        self.assertEqual(len(df), 1)
