"""voxmetric.data"""
