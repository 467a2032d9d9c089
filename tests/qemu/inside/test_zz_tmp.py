def test_deliberately_failing():
    print("inside-stdout-marker")
    assert 1 + 1 == 3
