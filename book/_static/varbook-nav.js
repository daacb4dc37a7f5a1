// The page has two buttons of each kind (.primary-toggle: the site navigation; .secondary-toggle:
// the page contents), one in each theme's header, and both pydata-sphinx-theme and
// sphinx-book-theme bind their handlers to the first one in the document, which is hidden. A
// click on a visible button is forwarded to that first one, whose handlers open the drawer on a
// phone and collapse the sidebar on a wide screen.
(function () {
  function forward() {
    ["primary-toggle", "secondary-toggle"].forEach(function (kind) {
      var buttons = Array.prototype.slice.call(document.querySelectorAll("." + kind));
      var bound = buttons[0];
      buttons.slice(1).forEach(function (button) {
        button.addEventListener("click", function (event) {
          event.preventDefault();
          event.stopPropagation();
          bound.click();
        });
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", forward);
  } else {
    forward();
  }
})();
