"""voxmetric.evaluate"""
