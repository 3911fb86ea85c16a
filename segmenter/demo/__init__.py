"""A local demo page: upload an image, see the segmentation, click a pixel to see what each head attends to.

    python tools/demo.py --config C --weights W     # then open the URL it prints (http://127.0.0.1:7860/)

`app.Demo` holds the model and answers the page's questions (framework-free, through the Inferencer and
`visualize.attention`); `server` runs the page's own process (the standard library's HTTP server, our page in
`static/`) and answers its requests with the model, one at a time, in this one.
"""

from segmenter.demo.app import Demo
from segmenter.demo.server import DemoError, DemoServer, serve

__all__ = ["Demo", "DemoError", "DemoServer", "serve"]
