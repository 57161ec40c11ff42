"""Input pipelines on `tf.data`, shared by both front ends (TensorFlow, never Keras)."""
