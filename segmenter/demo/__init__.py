"""A local demo page: upload an image, see the segmentation, click a pixel to see what each head attends to.

    python tools/demo.py --config C --weights W     # then open the URL it prints (http://127.0.0.1:7860/)

`app.Demo` holds the model and answers the page's questions (framework-free, through the Inferencer and
`visualize.attention`); `server` is the standard library's HTTP server with our own page in `static/`.
"""

from segmenter.demo.app import Demo, DemoError
from segmenter.demo.server import DemoServer, serve

__all__ = ["Demo", "DemoError", "DemoServer", "serve"]
