"""A tiny Sphinx extension: JavaScript files for named pages only.

`html_js_files` puts a script on every page. bertviz's views (Chapter 3) need d3, jQuery and require.js
(about 410 KB), which no other page uses, so `_config.yml` lists them per page instead:

    page_js_files:
      chapters/03_attention: ["../vendor/d3.min.js", "../vendor/jquery.min.js", ...]

keyed by Sphinx's page name (the source path without suffix), each list in load order. Sphinx documents
that `app.add_js_file` called from the `html-page-context` event adds the file to that page alone
(https://www.sphinx-doc.org/en/master/extdev/appapi.html#sphinx.application.Sphinx.add_js_file). The
files get priority 800, the priority Sphinx gives `html_js_files`, so they load where they did before.
A page name that is not in the book is a warning (an error under `-W`).
"""
from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

PRIORITY = 800  # the priority of html_js_files in Sphinx 7


def _add_page_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    for filename in app.config.page_js_files.get(pagename, []):
        app.add_js_file(filename, priority=PRIORITY)


def _check_page_names(app: Sphinx, env) -> None:
    for pagename in app.config.page_js_files:
        if pagename not in env.found_docs:
            logger.warning("page_js_files: no page named %r in the book", pagename)


def setup(app: Sphinx) -> dict:
    app.add_config_value("page_js_files", {}, "html", types=[dict])
    app.connect("html-page-context", _add_page_scripts)
    app.connect("env-updated", _check_page_names)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
