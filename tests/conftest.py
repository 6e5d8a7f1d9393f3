"""Shared fixtures: the bundled model is loaded once per test session (≈1.5 s)."""
import pytest

import cnnviz


@pytest.fixture(scope="session")
def bundle():
    """The offline EfficientNet-Lite0 ModelBundle."""
    return cnnviz.load_model()


@pytest.fixture(scope="session")
def cat(bundle):
    """The cat photo, float32 (224, 224, 3) in [0, 255], ImageNet evaluation crop."""
    return cnnviz.load_image("cat", size=bundle.input_size, crop=0.875)


@pytest.fixture(scope="session")
def coffee(bundle):
    return cnnviz.load_image("coffee", size=bundle.input_size, crop=0.875)


@pytest.fixture(scope="session")
def collage(bundle):
    """The cat|coffee collage at 224×224: cat on the left half, coffee on the right."""
    return cnnviz.load_image("cat_and_coffee", size=bundle.input_size)
