//! Every storefront page carries the stub snippet exactly as the README tells merchants to paste
//! it, and the script tag with the demo write key, before any script that calls `seam`.

use seam_e2e::{WRITE_KEY, demo_site_dir, workspace_root};

/// The snippet block of the README's "Adding seam to a site", with the demo's origin and key.
fn readme_snippet() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let section = readme
        .split("## Adding seam to a site")
        .nth(1)
        .expect("README has an \"Adding seam to a site\" section");
    let block = section
        .split("```html\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("that section has an ```html block");
    block
        .replace("https://COLLECTOR/sdk/seam.js", "/sdk/seam.js")
        .replace(
            "data-write-key=\"KEY\"",
            &format!("data-write-key=\"{WRITE_KEY}\" data-consent=\"opt-in\""),
        )
}

#[test]
fn every_storefront_page_carries_the_snippet_as_merchants_paste_it() {
    let snippet = readme_snippet();
    let mut pages: Vec<_> = std::fs::read_dir(demo_site_dir())
        .expect("demo-site/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 6, "storefront pages: {pages:?}");
    for page in pages {
        let html = std::fs::read_to_string(&page).expect("read page");
        let at = html
            .find(&snippet)
            .unwrap_or_else(|| panic!("{} lacks the README snippet:\n{snippet}", page.display()));
        let shop = html
            .find("/js/shop.js")
            .unwrap_or_else(|| panic!("{} does not load the shop script", page.display()));
        assert!(at < shop, "{}: the snippet must come first", page.display());
    }
}
