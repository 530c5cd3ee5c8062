/* Kettle & Crane demo catalogue: the products every storefront page renders. Prices in EUR. */
window.KC_PRODUCTS = [
  { id: "kc-yirgacheffe", sku: "KC-BEAN-ETH-250", name: "Yirgacheffe Single Origin", category: "Coffee",
    variant: "250 g, whole bean", price: 14.5, image: "/img/beans-yirgacheffe.svg",
    blurb: "Washed Ethiopian coffee with notes of jasmine, bergamot and lemon curd. Roasted light on Tuesdays, shipped on Wednesdays." },
  { id: "kc-huila", sku: "KC-BEAN-COL-500", name: "Huila House Blend", category: "Coffee",
    variant: "500 g, whole bean", price: 22.0, image: "/img/beans-huila.svg",
    blurb: "Our everyday coffee from smallholders in Huila, Colombia: milk chocolate, red apple and a round, sweet finish." },
  { id: "kc-mug", sku: "KC-MUG-300", name: "Stoneware Mug", category: "Cups",
    variant: "300 ml, harbour blue", price: 18.0, image: "/img/mug.svg",
    blurb: "Thrown by hand in Stoke-on-Trent, glazed in harbour blue, dishwasher safe and heavy enough to keep your coffee hot." },
  { id: "kc-dripper", sku: "KC-DRIP-02", name: "Ceramic Pour-over Dripper", category: "Brewing",
    variant: "Size 02", price: 29.0, image: "/img/dripper.svg",
    blurb: "A spiral-ribbed porcelain cone for one or two cups. Pairs with our paper filters." },
  { id: "kc-grinder", sku: "KC-GRIND-HAND", name: "Hand Grinder", category: "Brewing",
    variant: "Steel burrs", price: 64.0, image: "/img/grinder.svg",
    blurb: "Stainless conical burrs, 40 click settings from espresso to cold brew, and a walnut handle that folds away." },
  { id: "kc-filters", sku: "KC-FILT-100", name: "Paper Filters", category: "Brewing",
    variant: "Size 02, pack of 100", price: 6.5, image: "/img/filters.svg",
    blurb: "Oxygen-bleached paper filters that do not taste of paper. Fit the 02 dripper." }
];
