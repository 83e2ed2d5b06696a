"""``voxmetric serve``: speaker verification over HTTP, with a browser page.

:func:`create_app` builds the ASGI application (Starlette) around one loaded
:class:`~voxmetric.pretrained.SpeakerModel`; :mod:`voxmetric.deploy.serve.cli` runs it under
uvicorn. Needs the ``serve`` extra: ``pip install 'voxmetric[serve]'``.
"""

from .settings import ServeSettings, load_token

__all__ = ["ServeSettings", "create_app", "load_token"]


def create_app(*args, **kwargs):
    from .app import create_app as create

    return create(*args, **kwargs)
