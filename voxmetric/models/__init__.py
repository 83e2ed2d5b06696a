"""voxmetric.models"""
