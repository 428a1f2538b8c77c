// bertviz's views ask require.js for 'd3' and 'jquery' from a CDN. The book loads both itself
// (before require.js, so they do not register as anonymous AMD modules) and names them here,
// so require.js never goes to the network.
if (typeof define === "function" && define.amd) {
  if (window.d3) { define("d3", [], function () { return window.d3; }); }
  if (window.jQuery) { define("jquery", [], function () { return window.jQuery; }); }
}
