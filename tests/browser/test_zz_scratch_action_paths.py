from tests.browser.test_action_paths import *  # noqa
from tests.browser import test_action_paths as t

def test_debug(new_page, portal):
    page = t._sam_page(new_page, portal)
    t._open_action(page, "Delete one method")
    print(page.locator("main").inner_text())
    print(page.locator("form.form--action").inner_html()[:3000])
