"""voxmetric.losses"""
