/* Kettle & Crane demo storefront: header, consent banner, cart, sign-in and the Segment
   e-commerce events each page sends through window.seam.

   Storage: in opt-in mode the shop writes nothing to the browser (no cookie, no localStorage,
   no sessionStorage) until the visitor has accepted at least one optional consent category;
   until then, and after "Reject all", the cart and sign-in live in memory for the open page
   only and the banner asks again on the next page. After acceptance they are kept in
   localStorage under "kc-shop".

   Calls go through window.seam at call time: it is the stub snippet's array until the SDK loads
   and the real API afterwards. */
(function () {
  "use strict";

  var STORE_KEY = "kc-shop";
  var CURRENCY = "EUR";
  var OPTIONAL = ["analytics", "marketing", "personalization"];
  var products = window.KC_PRODUCTS || [];
  var sdkTag = document.querySelector("script[data-write-key]");
  var consentMode = (sdkTag && sdkTag.getAttribute("data-consent")) || "opt-out";

  var state = load();

  // ---- state ---------------------------------------------------------------------------------

  function load() {
    var empty = { cart: [], cartId: null, customer: null, consent: null };
    try {
      var raw = window.localStorage.getItem(STORE_KEY);
      if (!raw) return empty;
      var parsed = JSON.parse(raw);
      return {
        cart: Array.isArray(parsed.cart) ? parsed.cart : [],
        cartId: parsed.cartId || null,
        customer: parsed.customer || null,
        consent: parsed.consent || null
      };
    } catch (e) {
      return empty;
    }
  }

  function mayStore() {
    if (consentMode !== "opt-in") return !state.consent || anyOptional(state.consent);
    return !!state.consent && anyOptional(state.consent);
  }

  function anyOptional(consent) {
    return OPTIONAL.some(function (c) { return consent[c] === true; });
  }

  function save() {
    try {
      if (mayStore()) {
        window.localStorage.setItem(STORE_KEY, JSON.stringify(state));
      } else if (window.localStorage.getItem(STORE_KEY) !== null) {
        window.localStorage.removeItem(STORE_KEY);
      }
    } catch (e) {
      // Storage can be full or disabled; the shop still works for this page.
    }
  }

  function randomId(prefix) {
    var bytes = new Uint8Array(6);
    window.crypto.getRandomValues(bytes);
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += (bytes[i] % 36).toString(36);
    return prefix + s.toUpperCase();
  }

  /* A stable user ID per email, so the same customer has the same ID on every device. */
  function userIdFor(email) {
    var h = 0x811c9dc5;
    for (var i = 0; i < email.length; i++) {
      h ^= email.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return "cust_" + ("00000000" + h.toString(16)).slice(-8);
  }

  function product(id) {
    for (var i = 0; i < products.length; i++) if (products[i].id === id) return products[i];
    return null;
  }

  function money(n) {
    return "€" + n.toFixed(2);
  }

  function round2(n) {
    return Math.round(n * 100) / 100;
  }

  function cartLines() {
    return state.cart
      .map(function (line, i) {
        var p = product(line.id);
        return p ? { p: p, quantity: line.quantity, position: i + 1 } : null;
      })
      .filter(Boolean);
  }

  function cartCount() {
    return state.cart.reduce(function (n, l) { return n + l.quantity; }, 0);
  }

  function subtotal() {
    return round2(cartLines().reduce(function (s, l) { return s + l.p.price * l.quantity; }, 0));
  }

  function specProduct(p, quantity, position) {
    var out = { product_id: p.id, sku: p.sku, category: p.category, name: p.name, brand: "Kettle & Crane",
      variant: p.variant, price: p.price, quantity: quantity, url: location.origin + "/product.html?id=" + p.id,
      image_url: location.origin + p.image };
    if (position) out.position = position;
    return out;
  }

  function specProducts() {
    return cartLines().map(function (l) { return specProduct(l.p, l.quantity, l.position); });
  }

  // ---- DOM helpers (static strings only) -----------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function on(id, event, fn) {
    var node = document.getElementById(id);
    if (node) node.addEventListener(event, fn);
  }

  // ---- header and footer ---------------------------------------------------------------------

  function renderHeader() {
    var header = document.getElementById("site-header");
    if (!header) return;
    header.textContent = "";
    var account = state.customer
      ? el("span", { class: "account" }, [
          el("span", { class: "who", id: "signed-in-as" }, [state.customer.name || state.customer.email]),
          el("button", { type: "button", class: "link", id: "logout" }, ["Sign out"])
        ])
      : el("a", { href: "/login.html", id: "login-link" }, ["Sign in"]);
    header.appendChild(el("div", { class: "bar" }, [
      el("a", { href: "/", class: "brand" }, [el("span", { class: "mark" }, ["K&C"]), "Kettle & Crane"]),
      el("nav", {}, [
        el("a", { href: "/products.html" }, ["Shop"]),
        el("a", { href: "/products.html#brewing" }, ["Brewing"]),
        account,
        el("a", { href: "/cart.html", class: "cart-link", id: "cart-link" }, [
          "Cart ", el("span", { class: "badge", id: "cart-count" }, [String(cartCount())])
        ])
      ])
    ]));
    on("logout", "click", function () {
      window.seam.reset();
      state.customer = null;
      state.cart = [];
      state.cartId = null;
      save();
      renderHeader();
      if (document.body.getAttribute("data-page") === "cart") renderCart();
    });
  }

  function renderFooter() {
    var footer = document.getElementById("site-footer");
    if (!footer) return;
    footer.textContent = "";
    var privacy = el("button", { type: "button", class: "link", id: "privacy-choices" }, ["Privacy choices"]);
    privacy.addEventListener("click", function () { showBanner(true); });
    footer.appendChild(el("div", { class: "bar" }, [
      el("span", {}, ["Kettle & Crane · small-batch coffee, roasted in Leith · a seam demo shop"]),
      el("span", {}, [el("a", { href: "/profiles/" }, ["Profile viewer"]), " · ", privacy])
    ]));
  }

  // ---- consent banner ------------------------------------------------------------------------

  var CATEGORIES = [
    { key: "necessary", label: "Necessary", text: "Lets the shop work. Always on; stores nothing by itself.", locked: true },
    { key: "analytics", label: "Analytics", text: "Counts visits and purchases so we know what to roast next." },
    { key: "personalization", label: "Personalisation", text: "Remembers your cart and sign-in on this device." },
    { key: "marketing", label: "Marketing", text: "Lets us measure our newsletters and ads." }
  ];

  function applyConsent(choice) {
    var prefs = { necessary: true };
    OPTIONAL.forEach(function (c) { prefs[c] = choice[c] === true; });
    state.consent = prefs;
    window.seam.consent(prefs);
    save();
    hideBanner();
  }

  function hideBanner() {
    var banner = document.getElementById("consent-banner");
    if (banner) banner.remove();
  }

  function showBanner(withChoices) {
    hideBanner();
    var all = {};
    OPTIONAL.forEach(function (c) { all[c] = true; });
    var none = {};
    var choices = el("div", { class: "choices", id: "consent-choices" }, CATEGORIES.map(function (c) {
      var box = el("input", { type: "checkbox", name: c.key, id: "consent-" + c.key });
      box.checked = c.locked || !!(state.consent && state.consent[c.key]);
      box.disabled = !!c.locked;
      return el("label", { class: "choice", for: "consent-" + c.key }, [
        box, el("span", {}, [el("strong", {}, [c.label]), el("small", {}, [c.text])])
      ]);
    }));
    choices.hidden = !withChoices;
    var save = el("button", { type: "button", class: "btn", id: "consent-save" }, ["Save choices"]);
    save.hidden = !withChoices;
    var choose = el("button", { type: "button", class: "btn ghost", id: "consent-choose" }, ["Choose categories"]);
    choose.hidden = !!withChoices;
    var banner = el("section", { id: "consent-banner", class: "consent", role: "dialog", "aria-label": "Privacy choices" }, [
      el("div", { class: "consent-text" }, [
        el("h2", {}, ["Your privacy, your call"]),
        el("p", {}, ["We would like to count visits and remember your cart with seam, our self-hosted analytics. " +
          "Nothing is sent or stored on your device until you say yes."])
      ]),
      choices,
      el("div", { class: "consent-actions" }, [
        el("button", { type: "button", class: "btn ghost", id: "consent-reject-all" }, ["Reject all"]),
        choose,
        save,
        el("button", { type: "button", class: "btn", id: "consent-accept-all" }, ["Accept all"])
      ])
    ]);
    document.body.appendChild(banner);
    on("consent-accept-all", "click", function () { applyConsent(all); });
    on("consent-reject-all", "click", function () { applyConsent(none); });
    choose.addEventListener("click", function () {
      choices.hidden = false;
      save.hidden = false;
      choose.hidden = true;
    });
    save.addEventListener("click", function () {
      var picked = {};
      OPTIONAL.forEach(function (c) { picked[c] = document.getElementById("consent-" + c).checked; });
      applyConsent(picked);
    });
  }

  // ---- cart ----------------------------------------------------------------------------------

  function addToCart(p, quantity) {
    if (!state.cartId) state.cartId = randomId("cart_");
    var line = state.cart.filter(function (l) { return l.id === p.id; })[0];
    if (line) line.quantity += quantity;
    else state.cart.push({ id: p.id, quantity: quantity });
    save();
    var props = specProduct(p, quantity);
    props.cart_id = state.cartId;
    props.currency = CURRENCY;
    window.seam.track("Product Added", props);
    renderHeader();
  }

  // ---- pages ---------------------------------------------------------------------------------

  function productCard(p) {
    return el("a", { class: "card", href: "/product.html?id=" + encodeURIComponent(p.id), "data-product": p.id }, [
      el("img", { src: p.image, alt: "" }),
      el("span", { class: "card-body" }, [
        el("span", { class: "eyebrow" }, [p.category]),
        el("span", { class: "name" }, [p.name]),
        el("span", { class: "price" }, [money(p.price)])
      ])
    ]);
  }

  function renderGrid(id, list) {
    var grid = document.getElementById(id);
    if (!grid) return;
    list.forEach(function (p) { grid.appendChild(productCard(p)); });
  }

  function pageHome() {
    window.seam.page("Home");
    renderGrid("featured", products.slice(0, 4));
  }

  function pageProducts() {
    window.seam.page("Products");
    renderGrid("all-products", products);
    window.seam.track("Product List Viewed", {
      list_id: "all", category: "All",
      products: products.map(function (p, i) { return specProduct(p, 1, i + 1); })
    });
  }

  function pageProduct() {
    var id = new URLSearchParams(location.search).get("id");
    var p = product(id);
    var main = document.getElementById("product");
    if (!p) {
      window.seam.page("Product not found");
      main.appendChild(el("p", {}, ["We could not find that product. ", el("a", { href: "/products.html" }, ["Back to the shop"])]));
      return;
    }
    document.title = p.name + " · Kettle & Crane";
    window.seam.page("Product", p.name, { product_id: p.id });
    var props = specProduct(p, 1);
    props.currency = CURRENCY;
    props.value = p.price;
    window.seam.track("Product Viewed", props);
    var qty = el("input", { type: "number", min: "1", max: "20", value: "1", id: "quantity", "aria-label": "Quantity" });
    var add = el("button", { type: "button", class: "btn", id: "add-to-cart" }, ["Add to cart"]);
    var note = el("p", { class: "added", id: "added-note", role: "status" });
    add.addEventListener("click", function () {
      var n = Math.max(1, Math.min(20, parseInt(qty.value, 10) || 1));
      addToCart(p, n);
      note.textContent = "Added " + n + " × " + p.name + " to your cart.";
    });
    main.appendChild(el("div", { class: "product" }, [
      el("img", { src: p.image, alt: p.name }),
      el("div", { class: "product-info" }, [
        el("p", { class: "eyebrow" }, [p.category]),
        el("h1", {}, [p.name]),
        el("p", { class: "variant" }, [p.variant]),
        el("p", { class: "price big" }, [money(p.price)]),
        el("p", {}, [p.blurb]),
        el("div", { class: "buy" }, [qty, add]),
        note,
        el("p", { class: "small" }, ["Free shipping over €40 · roasted to order · SKU " + p.sku])
      ])
    ]));
  }

  function renderCart() {
    var main = document.getElementById("cart");
    main.textContent = "";
    var lines = cartLines();
    if (!lines.length) {
      main.appendChild(el("div", { class: "empty" }, [
        el("p", {}, ["Your cart is empty."]),
        el("a", { class: "btn", href: "/products.html" }, ["Browse coffee"])
      ]));
      return;
    }
    var rows = lines.map(function (l) {
      return el("tr", { "data-product": l.p.id }, [
        el("td", {}, [el("img", { src: l.p.image, alt: "" })]),
        el("td", {}, [el("a", { href: "/product.html?id=" + encodeURIComponent(l.p.id) }, [l.p.name]), el("br"), el("small", {}, [l.p.variant])]),
        el("td", { class: "num" }, [String(l.quantity)]),
        el("td", { class: "num" }, [money(l.p.price * l.quantity)])
      ]);
    });
    main.appendChild(el("table", { class: "cart-table" }, [
      el("thead", {}, [el("tr", {}, [el("th"), el("th", {}, ["Product"]), el("th", { class: "num" }, ["Qty"]), el("th", { class: "num" }, ["Total"])])]),
      el("tbody", {}, rows)
    ]));
    main.appendChild(el("div", { class: "cart-summary" }, [
      el("p", {}, ["Subtotal ", el("strong", { id: "cart-subtotal" }, [money(subtotal())])]),
      el("a", { class: "btn", href: "/checkout.html", id: "to-checkout" }, ["Check out"])
    ]));
  }

  function pageCart() {
    window.seam.page("Cart");
    window.seam.track("Cart Viewed", { cart_id: state.cartId, products: specProducts(), currency: CURRENCY });
    renderCart();
  }

  function shippingFor(sub) {
    return sub >= 40 ? 0 : 4.9;
  }

  function pageCheckout() {
    window.seam.page("Checkout");
    var main = document.getElementById("checkout");
    var lines = cartLines();
    if (!lines.length) {
      main.appendChild(el("div", { class: "empty" }, [
        el("p", {}, ["Nothing to check out yet."]),
        el("a", { class: "btn", href: "/products.html" }, ["Browse coffee"])
      ]));
      return;
    }
    var orderId = randomId("KC-");
    var sub = subtotal();
    var shipping = shippingFor(sub);
    var tax = round2(sub - sub / 1.2);
    var total = round2(sub + shipping);
    window.seam.track("Checkout Started", {
      order_id: orderId, cart_id: state.cartId, value: total, revenue: sub, shipping: shipping, tax: tax,
      currency: CURRENCY, products: specProducts()
    });
    var form = document.getElementById("checkout-form");
    var email = document.getElementById("email");
    var name = document.getElementById("name");
    if (state.customer) {
      email.value = state.customer.email;
      name.value = state.customer.name || "";
    }
    var summary = document.getElementById("order-summary");
    lines.forEach(function (l) {
      summary.appendChild(el("li", {}, [el("span", {}, [l.quantity + " × " + l.p.name]), el("span", {}, [money(l.p.price * l.quantity)])]));
    });
    summary.appendChild(el("li", { class: "muted" }, [el("span", {}, ["Shipping"]), el("span", {}, [shipping ? money(shipping) : "free"])]));
    summary.appendChild(el("li", { class: "total" }, [el("span", {}, ["Total (incl. VAT " + money(tax) + ")"]), el("span", { id: "order-total" }, [money(total)])]));
    form.hidden = false;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var props = {
        checkout_id: state.cartId, order_id: orderId, affiliation: "Kettle & Crane web shop", total: total,
        subtotal: sub, revenue: sub, shipping: shipping, tax: tax, currency: CURRENCY, products: specProducts()
      };
      if (!state.customer) props.email = email.value.trim();
      window.seam.track("Order Completed", props);
      state.cart = [];
      state.cartId = null;
      save();
      renderHeader();
      main.textContent = "";
      main.appendChild(el("div", { class: "confirmation", id: "order-confirmation" }, [
        el("h1", {}, ["Thank you!"]),
        el("p", {}, ["Order ", el("strong", { id: "order-id" }, [orderId]), " is confirmed. We roast on Tuesday and ship on Wednesday."]),
        el("p", {}, ["A receipt is on its way to " + email.value.trim() + "."]),
        el("a", { class: "btn", href: "/products.html" }, ["Keep shopping"])
      ]));
    });
  }

  function pageLogin() {
    window.seam.page("Sign in");
    var form = document.getElementById("login-form");
    var done = document.getElementById("login-done");
    function showDone() {
      form.hidden = true;
      done.hidden = false;
      document.getElementById("login-name").textContent = state.customer.name || state.customer.email;
    }
    if (state.customer) showDone();
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var email = document.getElementById("login-email").value.trim().toLowerCase();
      var name = document.getElementById("login-fullname").value.trim();
      if (!email) return;
      var userId = userIdFor(email);
      state.customer = { userId: userId, email: email, name: name };
      window.seam.identify(userId, { email: email, name: name });
      save();
      renderHeader();
      showDone();
    });
  }

  // ---- start ---------------------------------------------------------------------------------

  renderHeader();
  renderFooter();
  if (!state.consent) showBanner(false);
  var pages = { home: pageHome, products: pageProducts, product: pageProduct, cart: pageCart,
    checkout: pageCheckout, login: pageLogin };
  var page = pages[document.body.getAttribute("data-page")];
  if (page) page();
})();
