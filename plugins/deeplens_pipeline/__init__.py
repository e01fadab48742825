"""DeepLens object-detection pipeline: operators, triggers, hooks and the domain logic they call."""
