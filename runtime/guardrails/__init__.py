"""Guardrails: block, redact or flag what goes in and comes out (docs/guardrails.md).

config.py parses `guardrails_config`; kinds.py names the detector kinds (detectors/ offline, remote/
over the network); engine.py applies rules and actions; output.py and stream.py check answers and
streams; plugin.py wires it into the request pipeline; scrub.py keeps matched values out of the log.
"""
