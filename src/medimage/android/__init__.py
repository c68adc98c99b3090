"""The model for the Android app: the trained network as a TFLite file the TFLite Task Library and ML
Model Binding load (RGB input, TFLite metadata with labels and normalisation). ``package`` makes it;
``metadata_writer`` and ``task_library`` run in the tflite-support environment."""
