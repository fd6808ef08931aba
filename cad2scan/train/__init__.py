"""cad2scan.train"""
