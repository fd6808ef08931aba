"""cad2scan.align"""
