"""LiteLLM's proxy as the peer: one worker, offline, no database, warning-level logs.

``config.yaml`` maps the model name ``gpt-4o-mini`` to ``openai/gpt-4o-mini`` at the mock's
``/v1`` with a fake key, so LiteLLM does the same work as Bifrost: parse, route, call OpenAI, answer.
"""

from __future__ import annotations

import os
import tempfile

from bench import control
from bench.pinning import Layout
from bench.targets import litellm_env
from bench.targets.base import Running, Target

_CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {origin}/v1
      api_key: sk-bench-fake
  - model_name: text-embedding-3-small
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {origin}/v1
      api_key: sk-bench-fake
litellm_settings:
  telemetry: false
  drop_params: true
  request_timeout: 30
general_settings:
  # Like-for-like with Bifrost's bench config, which has no client auth either (recent LiteLLM
  # refuses to start without a master key unless told this is deliberate).
  dangerously_permit_weak_or_unset_master_key: true
"""


class LiteLLMTarget(Target):
    """``litellm --config ... --num_workers N`` from bench/.venvs/litellm."""

    name = "litellm"
    ready_path = "/health/liveliness"
    start_timeout = 180.0  # its proxy takes long to import and start, the more so on a cold disk cache

    def __init__(self, *, workers: int = 1, auto_install: bool = True) -> None:
        super().__init__()
        self.workers = workers
        self.auto_install = auto_install
        self.work_dir = ""

    def start(self, mock_origin: str, layout: Layout, port: int | None = None) -> Running:
        binary = litellm_env.ensure(self.auto_install)
        self.work_dir = tempfile.mkdtemp(prefix="bench-litellm-")
        cfg = os.path.join(self.work_dir, "config.yaml")
        with open(cfg, "w") as fh:
            fh.write(_CONFIG.format(origin=mock_origin))
        port = port or control.free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LITELLM_", "DATABASE_URL", "OPENAI_", "PYTHONPATH"))
        }
        # Offline: the bundled cost map, no DB, no telemetry, quiet logs.
        env.update(
            {
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "WARNING",
                "LITELLM_TELEMETRY": "False",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        cmd = [
            *layout.gateway_prefix(),
            binary,
            "--config",
            cfg,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(self.workers),
        ]
        proc = self._spawn_ready(
            cmd,
            env,
            os.path.join(self.work_dir, "litellm.log"),
            port=port,
            layout=layout,
            cwd=self.work_dir,
        )
        return Running(
            name=self.name,
            port=port,
            model="gpt-4o-mini",
            pid=proc.pid,
            notes=[f"litellm {litellm_env.version() or '?'}, {self.workers} worker(s)"],
        )


__all__ = ["LiteLLMTarget"]
