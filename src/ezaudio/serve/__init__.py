"""``ezaudio serve``: one process, one loaded model, an HTTP API and a web app.

Modules, one idea each:

- :mod:`~ezaudio.serve.settings`: the server's knobs (queue size, time limit, upload size, key);
- :mod:`~ezaudio.serve.schemas`: request models whose validators call :mod:`ezaudio.validation`;
- :mod:`~ezaudio.serve.worker`: the generation thread, its bounded queue and request batching;
- :mod:`~ezaudio.serve.audio_io`: decoding uploads and encoding responses, in memory;
- :mod:`~ezaudio.serve.spectrogram`: a PNG spectrogram for the web app, numpy and zlib only;
- :mod:`~ezaudio.serve.body_limit`: the ASGI middleware that answers 413;
- :mod:`~ezaudio.serve.webapp`: the web app's static files (``static/``) and their headers;
- :mod:`~ezaudio.serve.app`: the FastAPI application (API + the web app);
- :mod:`~ezaudio.serve.commands`: the ``ezaudio serve`` subcommand (uvicorn).

FastAPI, uvicorn and python-multipart come with the ``serve`` extra:
``pip install 'ezaudio[serve]'``.
"""
