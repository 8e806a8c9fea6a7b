# cnn (paper Table 6; the serverless image classification): SqueezeNet 1.1
# from torchvision classifying an image. No weights can be fetched here, so
# the network's weights are randomly initialised (seeded): lock behaviour
# depends on the computation, which is the same, not on the weights'
# values. One operation: a JPEG (generated) decoded, resized, classified.
torch = need("torch", "python3-torch")
models = need("torchvision.models", "python3-torchvision")
transforms = need("torchvision.transforms", "python3-torchvision")
Image = need("PIL.Image", "python3-pil")


def setup():
    torch.manual_seed(0)
    Image.effect_noise((640, 480), 64).convert("RGB").save("input.jpg")
    model = models.squeezenet1_1(weights=None).eval()
    prepare = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    return model, prepare


def operation(state):
    model, prepare = state
    with Image.open("input.jpg") as image:
        batch = prepare(image.convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        model(batch).argmax(1)
    return 1


serve("image", setup, operation)
