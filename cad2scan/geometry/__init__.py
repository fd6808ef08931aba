"""cad2scan.geometry"""
