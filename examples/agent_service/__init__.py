"""agent_service: the reference real-time agent backend built on safeship.

Clients open an authenticated WebSocket on ``/ws``, start agent runs and receive their events
as they happen; every event is stored with a per-run sequence number, so a client that
reconnects (to any instance) resumes without losing or repeating one.

Run it with ``uvicorn agent_service.main:app --app-dir examples``.
"""
