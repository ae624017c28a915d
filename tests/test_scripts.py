from datakit.scripts import dominant_script, scripts_agree


def test_dominant_script_counts_letters_not_punctuation():
    assert dominant_script("Habari ya asubuhi, 2024!") == "Latn"
    assert dominant_script("Привет, мир") == "Cyrl"
    assert dominant_script("وهذا خلك عاكب خطط") == "Arab"
    assert dominant_script("これは日本語の文です") == "Jpan"
    assert dominant_script("1234 !!") is None


def test_han_text_fits_both_chinese_scripts():
    assert scripts_agree("Hans", dominant_script("人人生而自由"))
    assert scripts_agree("Hant", dominant_script("人人生而自由"))
    assert not scripts_agree("Latn", "Cyrl")
