"""The browser tests' CRM page: its HTML, and Debian's jQuery for it (when installed)."""

from __future__ import annotations

from pathlib import Path

JQUERY = Path("/usr/share/javascript/jquery/jquery.min.js")  # Debian's libjs-jquery
HAVE_JQUERY = JQUERY.is_file()

# The page every snippet runs on: jQuery, jFabula's Base64.encode (UTF-8, then base64),
# and console.log kept, since the examples report what they get with it.
PAGE = """<!doctype html><meta charset="utf-8"><title>CRM</title>
<script src="/jquery.js"></script>
<script>
  window.Base64 = {encode: function (text) { return btoa(unescape(encodeURIComponent(text))); }};
  window.logged = [];
  var originalLog = console.log;
  console.log = function (value) {
    window.logged.push(value);
    originalLog.apply(console, arguments);
  };
</script>"""
