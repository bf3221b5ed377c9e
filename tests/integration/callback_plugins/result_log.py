# Copyright: xtractuniversal.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: every task result as one JSON line in $XU_RESULT_LOG."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: result_log
type: aggregate
short_description: Write every task result as JSON lines, for the integration tests
description:
  - Appends one JSON object per task result to the file named by the E(XU_RESULT_LOG) environment variable.
requirements:
  - the E(XU_RESULT_LOG) environment variable
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_log"
    CALLBACK_NEEDS_ENABLED = True

    def _log(self, result: Any, status: str) -> None:
        path = os.environ.get("XU_RESULT_LOG")
        if not path:
            return
        entry = {
            "host": result._host.get_name(),
            "task": result._task.get_name(),
            "action": result._task.action,
            "status": status,
            "result": {k: v for k, v in result._result.items() if not k.startswith("_ansible")},
        }
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, default=str) + "\n")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._log(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._log(result, "failed")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._log(result, "unreachable")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._log(result, "skipped")
