# image-processing (paper Table 6; FunctionBench's image_processing): an
# image loaded, flipped, rotated, filtered, turned grey and resized, each
# result saved as a JPEG. The input is generated: noise over a gradient.
Image = need("PIL.Image", "python3-pil")
ImageFilter = need("PIL.ImageFilter", "python3-pil")


def setup():
    size = (1024, 768)
    noise = Image.effect_noise(size, 48)
    gradient = Image.linear_gradient("L").resize(size)
    Image.merge("RGB", (noise, gradient, gradient.rotate(90))).save("input.jpg", quality=90)
    return "input.jpg"


def operation(path):
    with Image.open(path) as image:
        image.load()
        results = {
            "flip": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            "rotate": image.rotate(90, expand=True),
            "blur": image.filter(ImageFilter.BLUR),
            "contour": image.filter(ImageFilter.CONTOUR),
            "sharpen": image.filter(ImageFilter.SHARPEN),
            "gray": image.convert("L"),
            "resize": image.resize((512, 384)),
        }
        for name, result in results.items():
            result.save(f"out-{name}.jpg")
    return 1


serve("image", setup, operation)
